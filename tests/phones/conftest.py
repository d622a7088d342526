"""Real softphones from Debian against the whole server (SQLite): each phone in its own temporary folder with
its own free ports, ended by its PID when the test ends, whatever happened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.e2e.conftest import Room, guest_credentials, room  # noqa: F401  (the browser-alike room fixture)
from tests.phones.baresip import Baresip


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/meetings.db"


@pytest.fixture
async def baresip(tmp_path: Path) -> AsyncIterator[Baresip]:
    folder = tmp_path / "baresip"
    folder.mkdir()
    phone = Baresip(folder, tone_frequency=600)
    try:
        yield phone
    finally:
        await phone.stop()


def sip_server(api: Api, transport: str) -> tuple[str, int]:
    """The server's SIP address on `transport` ("udp" or "tcp")."""
    from gateway.app import SIP_STACK

    stack = api.client.app[SIP_STACK]
    listener = stack.udp if transport == "udp" else stack.tcp
    assert listener is not None
    return "127.0.0.1", listener.port


async def meeting_with_browser(api: Api, room: Room, tone: float = 440) -> tuple[dict[str, Any], str, Any]:
    """A meeting (its owner's token) with a browser-alike in it sending `tone`."""
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    browser = await room.member(guest_credentials(meeting), tone, None)
    await browser.join("meeting-guest")
    return meeting, token, browser
