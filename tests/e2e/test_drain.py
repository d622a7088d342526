"""SIGTERM drains a real server process: the call in progress goes on, new calls get 503 with a Reason, readiness
turns false, and the process exits cleanly once the meeting empties (or hangs up whoever is left at the limit)."""

from __future__ import annotations

import asyncio
import base64
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.serving import PASSWORD, Server, serving
from sfu.aiortc_adapter import gather_host_candidates
from tests.e2e.conftest import Member
from tests.e2e.sipclient import CallRefused, SipClient
from tests.sfu.clients import WebRtcClient

pytestmark = pytest.mark.slow

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


async def test_sigterm_lets_the_call_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    async with (
        aiohttp.ClientSession() as session,
        serving(tmp_path, f"sqlite:///{tmp_path}/m.db", log, MEDIA__HOST_ADDRESSES="[127.0.0.1]",
                DRAIN__TIMEOUT_SECONDS="60", LOGGING__LEVEL="INFO") as server,
    ):  # fmt: skip
        meeting = await make_meeting(session, server.base)
        staying = await guest(session, server, meeting, "red")
        late = await guest(session, server, meeting, "blue")
        try:
            await join(staying)
            assert staying.call is not None
            assert await ready_status(session, server) == 200

            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.5)
            assert not staying.call.ended.is_set(), "the call in progress goes on while draining"
            assert server.process.returncode is None
            assert await ready_status(session, server) == 503
            with pytest.raises(CallRefused) as refused:
                await join(late)
            assert refused.value.response.status == 503
            assert "restarting" in (refused.value.response.header("Reason") or "")
            assert refused.value.response.header("Retry-After") == "30"

            await staying.sip.bye(staying.call)
            assert await asyncio.wait_for(server.process.wait(), 15) == 0
        finally:
            await staying.close()
            await late.close()
    text = log.read_text()
    assert "draining: new calls are refused; 1 participants in 1 meetings" in text
    assert "drained: no meeting in progress" in text
    assert "Traceback" not in text


async def test_the_drain_limit_hangs_up_with_a_reason(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    async with (
        aiohttp.ClientSession() as session,
        serving(tmp_path, f"sqlite:///{tmp_path}/m.db", log, MEDIA__HOST_ADDRESSES="[127.0.0.1]",
                DRAIN__TIMEOUT_SECONDS="2", LOGGING__LEVEL="INFO") as server,
    ):  # fmt: skip
        meeting = await make_meeting(session, server.base)
        member = await guest(session, server, meeting, "red")
        try:
            await join(member)
            assert member.call is not None
            server.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(member.call.ended.wait(), 15)
            assert 'text="server restarting"' in (member.call.bye_reason or "")
            assert await asyncio.wait_for(server.process.wait(), 15) == 0
        finally:
            await member.close()
    assert "drain over (2 s passed): hanging up 1 participants" in log.read_text()
    assert "Traceback" not in log.read_text()
