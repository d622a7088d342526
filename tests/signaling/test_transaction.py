"""Transactions with short timers (T1 = 50 ms), over real UDP/TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

import signaling.stack as stack_module
from signaling.message import SipRequest, SipResponse, parse_message
from signaling.stack import SipStack
from signaling.transaction import TimerSettings, TransactionLayer, TransactionState
from signaling.transport import Flow

from .conftest import FAST, UdpPeer, authenticated
from .raw import OFFER, authorization, request

REGISTER_FIELDS: dict[str, object] = {"to": "<sip:alice@meetings.test>", "contact": "<sip:alice@127.0.0.1:9>"}
INVITE_FIELDS: dict[str, object] = {"to": "<sip:nobody@meetings.test>", "contact": "<sip:p@1>"}


async def test_unauthenticated_requests_leave_no_transaction(stack: SipStack, peer: UdpPeer) -> None:
    """OPTIONS, challenges and rejections are answered statelessly (RFC 3261 sections 8.2.7 and 26.3.2.4)."""
    port = stack.udp.port  # type: ignore[union-attr]
    sent = [
        request("OPTIONS", f"sip:127.0.0.1:{port}", peer.port),
        request("REGISTER", "sip:meetings.test", peer.port, **REGISTER_FIELDS),  # type: ignore[arg-type]
        request("INVITE", "sip:nobody@127.0.0.1", peer.port, **INVITE_FIELDS),  # type: ignore[arg-type]
        request("BYE", "sip:x@127.0.0.1", peer.port),
        request("CANCEL", "sip:x@127.0.0.1", peer.port),
        request("FOO", "sip:x@127.0.0.1", peer.port),
    ]
    for msg in sent:
        peer.send(msg, port)
        first = await peer.recv()
        peer.send(msg, port)  # a retransmission gets the same bytes (a new challenge would differ: tag, nonce)
        assert await peer.recv() == first
    assert stack.transactions.server == {} and stack.transactions._by_datagram == {}
    assert len(stack.transactions._answers) == len(sent)


async def test_retransmitted_request_is_absorbed_and_answered_again(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    msg = await authenticated(peer, port, "REGISTER", "sip:meetings.test", "z9hG4bKreg1", **REGISTER_FIELDS)
    peer.send(msg, port)
    first = await peer.recv()
    peer.send(msg, port)
    second = await peer.recv()
    assert first == second  # the same response, from the transaction, not a new one
    assert parse_message(first).status == 200  # type: ignore[union-attr]
    assert len(stack.transactions.server) == 1


async def test_non_2xx_to_invite_retransmitted_until_ack(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    inv = await authenticated(peer, port, "INVITE", "sip:nobody@127.0.0.1", "z9hG4bKinv1", **INVITE_FIELDS)
    peer.send(inv, port)
    r = await peer.response()
    while r.status == 100:
        r = await peer.response()
    assert r.status == 404
    # Timer G: retransmissions at T1, 2*T1 ... while no ACK
    again = await peer.silence(FAST.t1 * 4)
    assert len(again) >= 2 and all(parse_message(a).status == 404 for a in again)  # type: ignore[union-attr]
    ack = request("ACK", "sip:nobody@127.0.0.1", peer.port, branch="z9hG4bKinv1", to_tag=r.to_tag, cseq=2,
                  to="<sip:nobody@meetings.test>")  # fmt: skip
    peer.send(ack, port)
    await asyncio.sleep(FAST.t1)
    await peer.silence(FAST.t1)  # what was already on its way
    assert await peer.silence(FAST.t1 * 6) == []


async def test_timer_h_gives_up(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    inv = await authenticated(peer, port, "INVITE", "sip:nobody@127.0.0.1", "z9hG4bKinv2", **INVITE_FIELDS)
    peer.send(inv, port)
    start = time.monotonic()
    got = [b for b in await peer.silence(1.0) if not b.startswith(b"SIP/2.0 100")]
    elapsed = time.monotonic() - start
    # 64*T1 = 3.2 s; G doubles up to T2 = 0.4 s: about 1 + 8 retransmissions, then nothing
    assert 5 <= len(got) <= 14, len(got)
    assert elapsed < 64 * FAST.t1 + 1.5
    assert stack.transactions.server == {}


async def test_2xx_retransmitted_by_ua_core_until_ack(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    uri = "sip:meeting-guest@127.0.0.1"
    peer.send(request("INVITE", uri, peer.port, contact=f"<sip:p@127.0.0.1:{peer.port}>", body=OFFER), port)
    challenge = await peer.response()
    peer.send(request("ACK", uri, peer.port, to_tag=challenge.to_tag, branch=challenge.via.branch), port)
    auth = authorization(challenge, "guest", "guest-pw", "INVITE", uri)
    peer.send(
        request("INVITE", uri, peer.port, cseq=2, contact=f"<sip:p@127.0.0.1:{peer.port}>", body=OFFER, extra=[auth]),
        port,
    )
    assert (await peer.response()).status == 100
    ok = await peer.response()
    assert ok.status == 200 and ok.body.startswith(b"v=0")
    retrans = await peer.silence(FAST.t1 * 5)
    assert len(retrans) >= 2 and all(parse_message(x).status == 200 for x in retrans)  # type: ignore[union-attr]
    peer.send(request("ACK", uri, peer.port, cseq=2, to_tag=ok.to_tag), port)
    await asyncio.sleep(FAST.t1)
    await peer.silence(FAST.t1)
    assert await peer.silence(FAST.t1 * 6) == []


async def test_client_non_invite_retransmits_then_times_out(stack: SipStack, peer: UdpPeer) -> None:
    start = time.monotonic()
    task = asyncio.create_task(stack.request("OPTIONS", f"sip:x@127.0.0.1:{peer.port}"))
    got = await peer.silence(1.0)
    resp = await task
    elapsed = time.monotonic() - start
    assert resp.status == 408  # Timer F
    assert elapsed >= 64 * FAST.t1 - 0.1
    reqs = [parse_message(g) for g in got]
    assert all(isinstance(r, SipRequest) and r.method == "OPTIONS" for r in reqs)
    assert len({r.via.branch for r in reqs}) == 1  # retransmissions of one request (Timer E)
    assert 6 <= len(reqs) <= 14, len(reqs)


async def test_client_invite_non_2xx_acked_by_transaction(stack: SipStack, peer: UdpPeer) -> None:
    task = asyncio.create_task(stack.invite(f"sip:x@127.0.0.1:{peer.port}", OFFER))
    inv = parse_message(await peer.recv())
    assert isinstance(inv, SipRequest) and inv.method == "INVITE"
    busy = inv.create_response(486, to_tag="uas1")
    peer.send(busy.serialize(), stack.udp.port)  # type: ignore[union-attr]
    ack = parse_message(await peer.recv())
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    assert ack.via.branch == inv.via.branch and ack.cseq.seq == inv.cseq.seq and ack.to_tag == "uas1"
    try:
        await task
    except Exception as e:
        assert getattr(e, "response", None) is not None and e.response.status == 486  # type: ignore[attr-defined]
    else:
        raise AssertionError("a 486 must fail the call")
    # the retransmitted 486 gets the ACK again (Completed state)
    peer.send(busy.serialize(), stack.udp.port)  # type: ignore[union-attr]
    again = parse_message(await peer.recv())
    assert isinstance(again, SipRequest) and again.method == "ACK"


async def test_client_invite_timer_a_and_b(stack: SipStack, peer: UdpPeer) -> None:
    task = asyncio.create_task(stack.invite(f"sip:x@127.0.0.1:{peer.port}", OFFER))
    got = await peer.silence(1.0)
    try:
        await task
    except Exception as e:
        assert e.response.status == 408  # type: ignore[attr-defined]
    else:
        raise AssertionError("no answer must fail the call")
    # Timer A doubles without cap: 0.05, 0.1, 0.2, 0.4, 0.8, 1.6 -> about 7 sends in 3.2 s
    assert 5 <= len(got) <= 8, len(got)


async def test_no_retransmission_over_tcp(stack: SipStack) -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65535)
            if not data:
                break
            received.append(data)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resp = await stack.request("OPTIONS", f"sip:x@127.0.0.1:{port};transport=tcp")
    assert resp.status == 408
    assert len(received) == 1  # reliable transport: sent once
    assert b"SIP/2.0/TCP" in received[0]
    server.close()


async def test_cancel_unknown_is_481(stack: SipStack, peer: UdpPeer) -> None:
    port = stack.udp.port  # type: ignore[union-attr]
    peer.send(request("CANCEL", "sip:meeting-guest@127.0.0.1", peer.port), port)
    r = await peer.response()
    assert isinstance(r, SipResponse) and r.status == 481


class _SinkFlow(Flow):
    """An unreliable flow that keeps what is sent (no socket needed to watch the layer's timers)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 5060), ("127.0.0.1", 5999))
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True


async def test_finished_transactions_end_after_their_own_delay_in_order() -> None:
    timers = TimerSettings(t1=0.01, t2=0.04, t4=0.05)  # Timer J = 64 * T1 = 0.64 s, Timer K = T4 = 0.05 s
    layer = TransactionLayer(timers)
    flow = _SinkFlow()
    txs = []
    for i in range(3):
        req = parse_message(request("OPTIONS", "sip:127.0.0.1", 5999, branch=f"z9hG4bKend{i}"))
        assert isinstance(req, SipRequest)
        tx = layer.create_server(req, flow)
        tx.respond(req.create_response(200))
        txs.append(tx)
        await asyncio.sleep(0.1)
    # a retransmission while completed gets the same response again
    txs[-1].receive_request(txs[-1].request)
    assert flow.sent[-1] == flow.sent[-2]
    assert len(layer.server) == 3 and len(layer._ending_timers) == 1  # one loop timer for all of them
    await asyncio.sleep(0.64 - 0.3 + 0.05)
    assert txs[0].state is TransactionState.TERMINATED and txs[2].state is TransactionState.COMPLETED
    await asyncio.sleep(0.3)
    assert layer.server == {} and layer._ending == {} and layer._ending_timers == {}
    # terminated early (e.g. by close), a queued transaction is simply skipped at its deadline
    req = parse_message(request("OPTIONS", "sip:127.0.0.1", 5999, branch="z9hG4bKend9"))
    assert isinstance(req, SipRequest)
    tx = layer.create_server(req, flow)
    tx.respond(req.create_response(200))
    tx.terminate()
    layer.close()
    assert layer._ending == {} and layer._ending_timers == {}


async def test_udp_retransmission_absorbed_by_its_bytes_without_a_parse(
    stack: SipStack, peer: UdpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bytes] = []
    real_parse = stack_module.parse_message

    def counting_parse(data: bytes, *args: object, **kwargs: object) -> object:
        parsed.append(data)
        return real_parse(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stack_module, "parse_message", counting_parse)
    port = stack.udp.port  # type: ignore[union-attr]
    msg = await authenticated(peer, port, "REGISTER", "sip:meetings.test", "z9hG4bKraw1", **REGISTER_FIELDS)
    parsed.clear()
    peer.send(msg, port)
    first = await peer.recv()
    for _ in range(3):
        peer.send(msg, port)
        assert await peer.recv() == first
    assert len(parsed) == 1 and len(stack.transactions._by_datagram) == 1
    # a different datagram of the same transaction (a blank added) is parsed and matched the usual way
    peer.send(msg.replace(b"Max-Forwards: 70", b"Max-Forwards:  70"), port)
    assert await peer.recv() == first and len(parsed) == 2
    # the map forgets a transaction when it ends (Timer J = 64 * T1)
    await asyncio.sleep(64 * FAST.t1 + 0.3)
    assert stack.transactions._by_datagram == {} and stack.transactions.server == {}
    peer.send(msg, port)  # now a new request again (its nonce count was seen: not a 200, but parsed anew)
    assert parse_message(await peer.recv()).status in (401, 403)  # type: ignore[union-attr]
    assert len(parsed) == 3
