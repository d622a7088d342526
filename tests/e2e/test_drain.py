"""SIGTERM drains a real server process: the call in progress goes on, new calls get 503 with a Reason, readiness
turns false, and the process exits cleanly once the meeting empties (or hangs up whoever is left at the limit)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from bench.serving import serving
from tests.e2e.served import guest, join, make_meeting, ready_status
from tests.e2e.sipclient import CallRefused

pytestmark = [pytest.mark.slow, pytest.mark.waits]


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
