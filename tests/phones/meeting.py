"""The server side of a phone test: where its SIP listens, and a meeting with a browser-alike in it."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.app import SIP_STACK
from tests.conftest import Api
from tests.e2e.conftest import Member, Room, guest_credentials
from tests.sfu.clients import RATE, tone_power
from tests.waiting import until

#: what the browser-alike sends, and what each phone sends
ROOM_TONE = 440
PHONE_TONE = 600


def sip_server(api: Api, transport: str) -> tuple[str, int]:
    """The server's SIP address on `transport` ("udp", "tcp" or "tls")."""
    stack = api.client.app[SIP_STACK]
    listener = {"udp": stack.udp, "tcp": stack.tcp, "tls": stack.tls}[transport]
    assert listener is not None
    return "127.0.0.1", listener.port


async def meeting_with_browser(api: Api, room: Room, tone: float = ROOM_TONE) -> tuple[dict[str, Any], str, Member]:
    """A meeting (its owner's token) with a browser-alike in it sending `tone`."""
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    browser = await room.member(guest_credentials(meeting), tone, None)
    await browser.join("meeting-guest")
    return meeting, token, browser


async def assert_browser_hears_the_phone(browser: Member) -> None:
    """Two seconds of what the browser-alike receives: the phone's tone, and not its own (mix-minus)."""
    browser.media.audio.clear()
    browser.media.recording = True
    await until(lambda: sum(len(a) for a in browser.media.audio) >= RATE * 2, 10, "2 s of audio at the browser")
    browser.media.recording = False
    samples = browser.media.recorded().astype(np.float64)
    assert tone_power(samples, PHONE_TONE) > 0.2, tone_power(samples, PHONE_TONE)
    assert tone_power(samples, ROOM_TONE) < 0.02, tone_power(samples, ROOM_TONE)


async def delete_meeting(api: Api, meeting: dict[str, Any], token: str) -> None:
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", token, expect=204)
