"""Fuzzing: mutated and truncated messages at the parser (hypothesis + a seeded mutator) and at a live UDP
socket of the stack. Nothing may raise anything but SipParseError; the stack keeps answering OPTIONS."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.message import SipParseError, SipRequest, SipResponse, parse_message
from signaling.stack import SipStack
from signaling.transport import FramingError, StreamFramer

from .conftest import UdpPeer
from .raw import OFFER, request

SEEDS = [
    request("INVITE", "sip:meeting-guest@127.0.0.1", 5060, contact="<sip:p@127.0.0.1:5060>", body=OFFER),
    request("REGISTER", "sip:meetings.test", 5060, to="<sip:alice@meetings.test>", contact="<sip:a@1.2.3.4>"),
    request("OPTIONS", "sip:127.0.0.1", 5060),
    request("BYE", "sip:x@127.0.0.1", 5060, to_tag="abc"),
    request("CANCEL", "sip:meeting-guest@127.0.0.1", 5060),
    request("ACK", "sip:x@127.0.0.1", 5060, to_tag="t"),
    (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1>\r\n"
        b"Content-Length: 0\r\n\r\n"
    ),
    (
        b'MESSAGE sip:u@h SIP/2.0\r\nv: SIP/2.0/WS x.invalid;branch=z9hG4bKq\r\nf: "A, \\"B\\"" <sip:a@b>;tag=1\r\n'
        b"t: sip:u@h\r\ni: m1\r\nCSeq: 9 MESSAGE\r\nc: application/json\r\nl: 2\r\n\r\n{}"
    ),
]
TOKENS = [b":", b";", b",", b"\r\n", b"\r\n ", b" ", b'"', b"<", b">", b"\x00", b"\xff", b"=", b"@", b"\\", b"\t",
          b"SIP/2.0", b"z9hG4bK", b"Content-Length: 99999", b"99999999999", b"%", b"[", b"]", b"\r\n\r\n"]  # fmt: skip


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:  # delete a span
            del buf[pos : pos + rng.randint(1, 40)]
        elif op == 3:  # truncate
            del buf[pos:]
        elif op == 4:  # duplicate a span
            buf[pos:pos] = buf[max(0, pos - 60) : pos]
        elif op == 5:  # random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        else:  # swap two lines
            lines = bytes(buf).split(b"\r\n")
            if len(lines) > 2:
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
                buf = bytearray(b"\r\n".join(lines))
    return bytes(buf)


def check_parse(data: bytes) -> None:
    for datagram in (True, False):
        try:
            msg = parse_message(data, datagram=datagram)
        except SipParseError:
            continue
        assert isinstance(msg, SipRequest | SipResponse)
        again = parse_message(msg.serialize(), datagram=datagram)  # what we write, we read back
        assert type(again) is type(msg) and again.body == msg.body
        # everything the stack reads from a parsed message must be readable
        msg.call_id, msg.cseq, msg.via, msg.from_tag, msg.to_tag  # noqa: B018


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(SEEDS), rnd=st.randoms(use_true_random=False))
def test_parser_hypothesis(seed: bytes, rnd: random.Random) -> None:
    check_parse(mutate(rnd, seed))


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=600))
def test_parser_random_bytes(data: bytes) -> None:
    check_parse(data)
    check_parse(b"INVITE sip:a@b SIP/2.0\r\n" + data)


def test_parser_10000_mutations_and_truncations() -> None:
    rng = random.Random(4475)
    for i in range(10_000):
        seed = SEEDS[i % len(SEEDS)]
        data = mutate(rng, seed) if i % 4 else seed[: rng.randrange(len(seed) + 1)]
        check_parse(data)
        framer = StreamFramer()
        try:
            for frame in framer.feed(data + seed):
                if frame is not None:
                    check_parse(frame)
        except FramingError:
            pass


@pytest.mark.slow
async def test_live_udp_socket_survives_10000_mutants(
    stack: SipStack, peer: UdpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    rng = random.Random(3261)
    seeds = [s.replace(b"5060", str(peer.port).encode()) for s in SEEDS]
    caplog.set_level(logging.ERROR)
    loop = asyncio.get_running_loop()
    for i in range(10_000):
        seed = seeds[i % len(seeds)]
        data = mutate(rng, seed) if i % 5 else seed[: rng.randrange(len(seed) + 1)]
        peer.sock.sendto(data[:65000], ("127.0.0.1", port))
        if i % 50 == 49:
            await asyncio.sleep(0.002)  # let the stack read (a full socket buffer would only drop datagrams)
            try:
                while True:
                    peer.sock.recv(65535)  # drain the answers
            except BlockingIOError:
                pass
    await asyncio.sleep(0.2)
    await loop.run_in_executor(None, lambda: None)
    await peer.silence(0.3)
    peer.send(request("OPTIONS", f"sip:127.0.0.1:{port}", peer.port, call_id="after-fuzz"), port)
    for _ in range(20):
        r = await peer.response(wait=2.0)
        if r.call_id == "after-fuzz":
            break
    assert r.call_id == "after-fuzz" and r.status == 200
    failures = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert failures == [], [f.getMessage() for f in failures[:5]]
