"""A meeting that expires hangs up whoever is still in it, at the second it is due."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import pytest

from tests.conftest import Api, make_settings
from tests.e2e.conftest import Room, guest_credentials


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(database_url, MEETINGS_MEETINGS__EXPIRY_SECONDS="5")


async def test_expiry_hangs_everyone_up(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    members = [await room.member(guest_credentials(meeting), None, colour) for colour in ("red", "green")]
    for member in members:
        await member.join("meeting-guest")
    due = datetime.datetime.fromisoformat(meeting["creation_time"]).timestamp() + 5
    for member in members:
        assert member.call is not None
        await asyncio.wait_for(member.call.ended.wait(), 10)
        assert "meeting expired" in (member.call.bye_reason or "")
    assert abs(time.time() - due) < 1.5
    await api.call("GET", f"/api/confd/1.1/guests/me/meetings/{meeting['uuid']}", expect=404)
