"""A real server process (bench.serving) and guests joining it through its SIP WebSocket."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from bench.serving import PASSWORD, Server
from sfu.aiortc_adapter import gather_host_candidates
from tests.e2e.conftest import Member
from tests.e2e.sipclient import SipClient
from tests.sfu.clients import WebRtcClient

DOMAIN = "meetings.local"


async def make_meeting(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    basic = {"Authorization": aiohttp.encode_basic_auth("admin", PASSWORD)}
    async with session.post(f"{base}/api/auth/0.1/token", headers=basic, json={"expiration": 600}) as answer:
        token = (await answer.json())["data"]["token"]
    headers = {"X-Auth-Token": token}
    async with session.post(f"{base}/api/confd/1.1/users/me/meetings", json={"name": "drain"}, headers=headers) as a:
        assert a.status == 201, await a.text()
        meeting: dict[str, Any] = await a.json()
    return meeting


async def guest(session: aiohttp.ClientSession, server: Server, meeting: dict[str, Any], colour: str) -> Member:
    username, password = base64.b64decode(meeting["guest_sip_authorization"]).decode().split(":", 1)
    sip = SipClient(username, password, DOMAIN)
    await sip.connect_ws(session, server.base.replace("http://", "ws://") + "/api/asterisk/ws")
    assert (await sip.register()).status == 200
    member = Member(WebRtcClient(username, 440.0, colour), sip)
    sip.on_offer = member.answer_offer
    return member


async def join(member: Member) -> None:
    pc = member.media.pc
    gather_host_candidates(pc, ["127.0.0.1"], None)
    await member.join("meeting-guest")


async def ready_status(session: aiohttp.ClientSession, server: Server) -> int:
    async with session.get(f"{server.base}/readyz") as answer:
        return answer.status
