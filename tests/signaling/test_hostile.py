"""Hostile SIP traffic (issue 12, defects 1 and 3): malformed required headers never raise, and what an
unauthenticated source can make the server hold is bounded (datagram sizes, stateless answers, caps with 503)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from signaling.message import SipResponse
from signaling.stack import SipStack, StackConfig

from .conftest import FAST, UdpPeer, authenticated
from .raw import request
from .server_process import ServerProcess
from .support import Accounts, DialPlan


def issue_datagram(via: str) -> bytes:
    """The reproduction of defect 1, with the Via given."""
    return (
        "OPTIONS sip:meetings.local SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:meetings.local>\r\nCall-ID: r1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("via", [",", "", " , , ", "garbage", "HTTP/1.1 host"])
async def test_request_without_a_usable_via_is_dropped_with_one_short_line(
    via: str, stack: SipStack, peer: UdpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="signaling")
    port = stack.udp.port  # type: ignore[union-attr]
    peer.send(issue_datagram(via), port)
    assert await peer.silence(0.3) == []
    records = [r for r in caplog.records if r.name.startswith("signaling")]
    assert len(records) <= 1 and all(r.exc_info is None and len(r.getMessage()) < 200 for r in records)
    assert all(r.levelno < logging.WARNING for r in records)
    # the stack answers the next request as usual
    peer.send(issue_datagram(f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKok"), port)
    assert (await peer.response()).status == 200


def options(port: int, replace: tuple[bytes, bytes] | None = None, extra: list[str] | None = None) -> bytes:
    data = request("OPTIONS", "sip:127.0.0.1", port, extra=extra)
    return data.replace(*replace) if replace else data


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ((b"From: <sip:peer@127.0.0.1>;tag=ft1", b"From: "), "missing From"),
        ((b"To: <sip:meeting-guest@meetings.test>", b"To:"), "missing To"),
        ((b"Call-ID: call-1", b"Call-ID:  "), "missing Call-ID"),
        ((b"CSeq: 1 OPTIONS", b"CSeq: "), "missing CSeq"),
        ((b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"), "bad CSeq header"),
        ((b"CSeq: 1 OPTIONS", "CSeq: \u00b2 OPTIONS".encode()), "bad CSeq header"),  # a digit int() refuses
        ((b"CSeq: 1 OPTIONS", b"CSeq: 1"), "bad CSeq header"),
        ((b"CSeq: 1 OPTIONS", b"CSeq: 4294967296 OPTIONS"), "bad CSeq header"),
        ((b"From: <sip:peer@127.0.0.1>;tag=ft1", b"From: <sip:peer@127.0.0.1:99999>;tag=ft1"), "bad From header"),
        ((b"From: <sip:peer@127.0.0.1>;tag=ft1", b"From: A, B <sip:p@h>;tag=1"), "bad From header"),
        ((b"To: <sip:meeting-guest@meetings.test>", b'To: "open <sip:x@y>'), "bad To header"),
        ((b"Call-ID: call-1", b"Call-ID: call-1\r\nCall-ID: call-2"), "more than one Call-ID header"),
        ((b";rport\r\n", b";rport, ;;\r\n"), "bad Via header"),
        ((b";rport\r\n", b";rport\r\nVia: SIP/2.0/UDP\r\n"), "bad Via header"),
        ((b"Content-Length: 0", "Content-Length: \u00b2".encode()), "bad Content-Length"),
        ((b"Content-Length: 0", b"Content-Length: 99999999999999999999"), "bad Content-Length"),
        ((b"Content-Length: 0", b"Content-Length: 4000"), "body shorter than Content-Length"),
        ((b"Max-Forwards: 70", b"Max-Forwards: 256"), "bad Max-Forwards"),
        ((b"Max-Forwards: 70", b"Max-Forwards: "), "bad Max-Forwards"),
        ((b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n", b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n folded\r\n"), "continuation"),
        ((b"OPTIONS sip:127.0.0.1 SIP/2.0", b"OPTIONS sip:127.0.0.1 x SIP/2.0"), "bad Request-Line"),
    ],
)
async def test_malformed_required_values_get_a_400_naming_them(
    change: tuple[bytes, bytes], reason: str, stack: SipStack, peer: UdpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = stack.udp.port  # type: ignore[union-attr]
    peer.send(options(peer.port, change), port)
    data = await peer.recv()
    first_line = data.split(b"\r\n", 1)[0].decode()
    assert first_line.startswith("SIP/2.0 400 Bad Request (") and reason in first_line, first_line
    assert b"Call-ID:" in data and b"Via: SIP/2.0/UDP 127.0.0.1" in data  # answerable, so answered
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert stack.transactions.server == {}  # a 400 holds nothing


async def test_oversized_datagrams_are_dropped_unread(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    limits = stack.config
    pad = "X-Pad: " + "p" * 100
    small = options(peer.port, extra=[pad] * ((limits.udp_max_bodyless_request - 600) // 108))
    big = options(peer.port, extra=[pad] * ((limits.udp_max_bodyless_request + 200) // 108))
    assert len(small) < limits.udp_max_bodyless_request < len(big) < limits.udp_max_request
    peer.send(big, port)
    assert await peer.silence(0.3) == []  # no body needed: over the smaller limit
    peer.send(small, port)
    assert (await peer.response()).status == 200
    invite = request("INVITE", "sip:x@127.0.0.1", peer.port, contact="<sip:p@h>", body=b"v=0\r\n" * 3500)
    assert len(invite) > limits.udp_max_request
    peer.send(invite, port)
    assert await peer.silence(0.3) == []
    invite = request("INVITE", "sip:x@127.0.0.1", peer.port, contact="<sip:p@h>", body=b"v=0\r\n" * 2000)
    assert limits.udp_max_bodyless_request < len(invite) < limits.udp_max_request
    peer.send(invite, port)
    assert (await peer.response()).status == 401  # an INVITE may carry a body that size


@pytest.fixture
async def capped(accounts: Accounts, plan: DialPlan) -> AsyncIterator[SipStack]:
    config = StackConfig(
        domain="meetings.test", timers=FAST, max_transactions_per_source=3, max_transactions=4, overload_retry_after=7
    )
    s = SipStack(config, accounts, plan)
    await s.start_udp("127.0.0.1", 0)
    yield s
    await s.close()


@pytest.fixture
def other_peers() -> Iterator[list[UdpPeer]]:
    peers = [UdpPeer("127.0.0.2"), UdpPeer("127.0.0.3")]
    yield peers
    for p in peers:
        p.close()


REGISTER_FIELDS: dict[str, object] = {"to": "<sip:alice@meetings.test>", "contact": "<sip:alice@127.0.0.1:9>"}


async def register(peer: UdpPeer, port: int, call_id: str) -> SipResponse:
    msg = await authenticated(
        peer, port, "REGISTER", "sip:meetings.test", f"z9hG4bK{call_id}", call_id=call_id, **REGISTER_FIELDS
    )
    peer.send(msg, port)
    return await peer.response()


async def test_transaction_caps_answer_503_with_retry_after(
    capped: SipStack, peer: UdpPeer, other_peers: list[UdpPeer], caplog: pytest.LogCaptureFixture
) -> None:
    """Authenticated REGISTERs keep a transaction for Timer J (64 * T1 = 3.2 s here): a fourth from one source
    address is over the per-source cap (3), a second source still gets in, a third is over the total (4)."""
    port = capped.udp.port  # type: ignore[union-attr]
    start = time.monotonic()
    assert [(await register(peer, port, f"cap{i}")).status for i in range(3)] == [200, 200, 200]
    over = await register(peer, port, "cap3")
    assert over.status == 503 and over.headers.get("retry-after") == "7"
    assert (await register(other_peers[0], port, "cap4")).status == 200  # another source address
    over = await register(other_peers[1], port, "cap5")
    assert over.status == 503 and over.headers.get("retry-after") == "7"  # the total
    assert time.monotonic() - start < 64 * FAST.t1  # all of it while the first ones were held
    assert len(capped.transactions.server) == 4  # the 503s held nothing
    assert len([r for r in caplog.records if "cap reached" in r.getMessage()]) == 1  # a line a minute at most
    peer.send(request("OPTIONS", "sip:127.0.0.1", peer.port), port)
    assert (await peer.response()).status == 200  # stateless answers are not capped
    # once Timer J has ended them, the source is admitted again
    await asyncio.sleep(64 * FAST.t1 + 0.3)
    assert capped.transactions.server == {} and capped.transactions._per_source == {}
    assert (await register(peer, port, "cap6")).status == 200


FLOOD_GROWTH_LIMIT_MIB = 24


@pytest.mark.slow
def test_flood_of_large_datagrams_leaves_memory_bounded(tmp_path: Path) -> None:
    """Defect 3's reproduction (10,000 valid 64 KB OPTIONS over UDP) and floods just under the size limits
    (OPTIONS of 4 KB, unauthenticated INVITEs of 16 KB, all answered), against the stack in its own process:
    its RSS grows by less than FLOOD_GROWTH_LIMIT_MIB (before the fix: 587 -> 1,972 MiB)."""
    server = ServerProcess(tmp_path / "server.log")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.0)
        me = sock.getsockname()[1]
        target = ("127.0.0.1", server.udp_port)
        before = server.rss_mib()

        def flood(count: int, size: int, method: str, extra: list[str], burst: int = 20) -> int:
            body = b"x" * max(0, size - 600)
            answers = 0
            for i in range(count):
                data = request(method, "sip:127.0.0.1", me, call_id=f"flood-{method}-{size}-{i}", extra=extra,
                               body=body).replace(b"application/sdp", b"text/plain")  # fmt: skip
                sock.sendto(data[:size], target)
                if i % burst == burst - 1:
                    time.sleep(0.004)  # let the server read: a full socket buffer would only drop datagrams
                answers += _drain(sock)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                got = _drain(sock)
                answers += got
                if not got:
                    time.sleep(0.05)
            return answers

        flood(10_000, 64_000, "OPTIONS", [])
        options_answered = flood(10_000, 4_000, "OPTIONS", [])
        invites_answered = flood(5_000, 16_000, "INVITE", ["Contact: <sip:flood@127.0.0.1>"], burst=8)
        after = server.rss_mib()
        print(f"RSS {before:.1f} -> {after:.1f} MiB; answered {options_answered} OPTIONS, {invites_answered} INVITEs")
        assert options_answered > 5_000 and invites_answered > 2_000  # the floods did reach the server
        assert after - before < FLOOD_GROWTH_LIMIT_MIB
        assert "Traceback" not in server.log()
    finally:
        sock.close()
        server.stop()


def _drain(sock: socket.socket) -> int:
    n = 0
    try:
        while True:
            data = sock.recv(65535)
            if data.startswith(b"SIP/2.0 "):
                n += 1
    except BlockingIOError:
        return n


async def test_expires_with_a_digit_int_refuses_is_a_400(
    stack: SipStack, peer: UdpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    """ "²" is a digit to str.isdigit but not to int(): an authenticated REGISTER carrying it got no answer and
    a Traceback ("SIP task failed") before."""
    port = stack.udp.port  # type: ignore[union-attr]
    fields = {**REGISTER_FIELDS, "extra": ["Expires: \u00b2"]}
    msg = await authenticated(peer, port, "REGISTER", "sip:meetings.test", "z9hG4bKexp", **fields)
    peer.send(msg, port)
    response = await peer.response()
    assert response.status == 400 and "Expires" in response.reason
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
