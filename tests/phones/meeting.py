"""The server side of a phone test: where its SIP listens, and a meeting with a browser-alike in it."""

from __future__ import annotations

from typing import Any

from gateway.app import SIP_STACK
from tests.conftest import Api
from tests.e2e.conftest import Member, Room, guest_credentials


def sip_server(api: Api, transport: str) -> tuple[str, int]:
    """The server's SIP address on `transport` ("udp" or "tcp")."""
    stack = api.client.app[SIP_STACK]
    listener = stack.udp if transport == "udp" else stack.tcp
    assert listener is not None
    return "127.0.0.1", listener.port


async def meeting_with_browser(api: Api, room: Room, tone: float = 440) -> tuple[dict[str, Any], str, Member]:
    """A meeting (its owner's token) with a browser-alike in it sending `tone`."""
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    browser = await room.member(guest_credentials(meeting), tone, None)
    await browser.join("meeting-guest")
    return meeting, token, browser
