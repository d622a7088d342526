"""SIP over WebSocket (RFC 7118) on an aiohttp server, with aiohttp's client as the peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from signaling.message import SipRequest, SipResponse, parse_message
from signaling.stack import SipStack

from .raw import OFFER, authorization
from .support import DialPlan

WS_PATH = "/api/asterisk/ws"


@pytest.fixture
async def ws_url(stack: SipStack) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(WS_PATH, stack.websocket.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}{WS_PATH}"
    await stack.websocket.close()
    await runner.cleanup()


def ws_request(
    method: str, uri: str, *, cseq: int = 1, to: str, extra: list[str] | None = None, body: bytes = b""
) -> str:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK" + f"{method}{cseq}x;rport",
        "Max-Forwards: 70",
        "From: <sip:guest@meetings.test>;tag=wsft",
        f"To: {to}",
        "Call-ID: ws-call-1",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:k8s7@df7jal23ls0d.invalid;transport=ws>;expires=600",
        *(extra or []),
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines) + "\r\n\r\n" + body.decode()


async def recv_sip(ws: aiohttp.ClientWebSocketResponse) -> SipRequest | SipResponse:
    msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return parse_message(msg.data.encode(), datagram=False)


async def test_handshake_requires_sip_subprotocol(ws_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await session.ws_connect(ws_url)
        assert e.value.status == 400
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(ws_url, protocols=("chat",))
        async with session.ws_connect(ws_url, protocols=("sip",)) as ws:
            assert ws.protocol == "sip"
            await ws.send_str("\r\n\r\n")  # keep-alive ping
            pong = await asyncio.wait_for(ws.receive(), 2)
            assert pong.data == "\r\n"


async def test_register_and_binding_dies_with_connection(stack: SipStack, ws_url: str) -> None:
    uri = "sip:meetings.test"
    to = "<sip:guest@meetings.test>"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, protocols=("sip",)) as ws:
            await ws.send_str(ws_request("REGISTER", uri, to=to))
            challenge = await recv_sip(ws)
            assert isinstance(challenge, SipResponse) and challenge.status == 401
            assert challenge.via.host == "df7jal23ls0d.invalid"  # answered over the connection, Via untouched
            auth = authorization(challenge, "guest", "guest-pw", "REGISTER", uri)
            await ws.send_str(ws_request("REGISTER", uri, cseq=2, to=to, extra=[auth]))
            ok = await recv_sip(ws)
            assert isinstance(ok, SipResponse) and ok.status == 200
            bindings = stack.registrar.lookup("guest")
            assert len(bindings) == 1 and bindings[0].flow is not None and bindings[0].flow.transport == "WS"
            await ws.send_str(ws_request("OPTIONS", uri, cseq=3, to=to))
            opt = await recv_sip(ws)
            assert isinstance(opt, SipResponse) and opt.status == 200
        for _ in range(50):
            if not stack.registrar.lookup("guest"):
                break
            await asyncio.sleep(0.02)
        assert stack.registrar.lookup("guest") == []


async def test_call_over_websocket_requests_come_back_on_the_connection(
    stack: SipStack, plan: DialPlan, ws_url: str
) -> None:
    uri = "sip:meeting-guest@meetings.test"
    to = "<sip:meeting-guest@meetings.test>"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, protocols=("sip",)) as ws:
            await ws.send_str(ws_request("INVITE", uri, to=to, body=OFFER))
            challenge = await recv_sip(ws)
            assert isinstance(challenge, SipResponse) and challenge.status == 401
            ack = ws_request("ACK", uri, to=f"{to};tag={challenge.to_tag}").replace("ACK1x", "INVITE1x")
            await ws.send_str(ack)
            auth = authorization(challenge, "guest", "guest-pw", "INVITE", uri)
            await ws.send_str(ws_request("INVITE", uri, cseq=2, to=to, extra=[auth], body=OFFER))
            trying = await recv_sip(ws)
            assert isinstance(trying, SipResponse) and trying.status == 100
            ok = await recv_sip(ws)
            assert isinstance(ok, SipResponse) and ok.status == 200
            assert "transport=ws" in (ok.headers.get("contact") or "")
            await ws.send_str(ws_request("ACK", uri, cseq=2, to=f"{to};tag={ok.to_tag}"))
            await asyncio.wait_for(plan.handlers[0].confirmed.wait(), 2)
            dialog = plan.calls[0].dialog
            # the server's MESSAGE goes to a *.invalid contact: only possible over this connection
            sending = asyncio.create_task(dialog.message(b'{"type": "ConfbridgeJoin"}'))
            msg = await recv_sip(ws)
            assert isinstance(msg, SipRequest) and msg.method == "MESSAGE"
            assert msg.uri == "sip:k8s7@df7jal23ls0d.invalid;transport=ws"
            assert msg.via.transport == "WS"
            await ws.send_str(msg.create_response(200).serialize().decode())
            assert (await sending).status == 200
        # the connection is gone: so is the dialog
        await asyncio.wait_for(plan.handlers[0].terminated.wait(), 2)
        assert plan.handlers[0].reason == "transport-closed"
