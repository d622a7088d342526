"""People in a meeting hear and see each other, through the real SIP path: WebSocket, REGISTER with digest,
INVITE, the video-slot re-INVITE, and ConfBridge-style room updates."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.conftest import Api
from tests.e2e.conftest import Member, Room, guest_credentials, user_line
from tests.e2e.sipclient import SipClient
from tests.sfu.clients import RtpPhone, tone_power
from tests.sfu.clients import record as record_audio
from tests.waiting import until


async def record(members: list[Member], seconds: float) -> None:
    await record_audio(*(member.media for member in members), seconds=seconds)


def powers(member: Member) -> tuple[float, float]:
    samples = member.media.recorded().astype(np.float64)
    assert samples.size > 48000 * 0.5, f"{member.sip.username} received too little audio"
    return tone_power(samples, 440), tone_power(samples, 880)


async def phone_on_line(api: Api, room: Room, token: str) -> tuple[SipClient, RtpPhone]:
    """A plain-RTP phone (880 Hz, PCMU) on the SIP line of the user whose token is `token`, over UDP; it has not
    registered yet."""
    phone_sip = SipClient(*await user_line(api, token), api.services.settings.sip.domain)
    await phone_sip.connect_udp(room.udp_address)
    phone = RtpPhone(880)
    await phone.open()
    return phone_sip, phone


async def browser_and_phone_hear_each_other(browser: Member, phone: RtpPhone) -> None:
    """The browser-alike (440 Hz) hears the phone (880 Hz) and not itself; the phone hears the browser."""
    await asyncio.sleep(2.0)
    phone.received.clear()
    await record([browser], 2.5)
    heard = phone.decoded().astype(np.float64)
    assert heard.size > 8000, "the phone received too little audio"
    assert tone_power(heard, 440, 8000) > 0.2, "the phone does not hear the browser"
    b440, b880 = powers(browser)
    assert b880 > 0.2 and b440 < 0.02, (b440, b880)


async def hear_and_see_each_other(a: Member, b: Member, c: Member) -> None:
    """A (440 Hz, red), B (880 Hz, green) and C (silent, blue): C hears both tones, A hears 880 and not 440, B 440
    and not 880; each sees the others' colours and never his own."""
    await asyncio.sleep(2.0)
    await record([a, b, c], 2.5)
    a440, a880 = powers(a)
    b440, b880 = powers(b)
    c440, c880 = powers(c)
    assert c440 > 0.1 and c880 > 0.1, (c440, c880)
    assert a880 > 0.2 and a440 < 0.02, (a440, a880)
    assert b440 > 0.2 and b880 < 0.02, (b440, b880)
    await until(lambda: a.media.colours_seen() >= {"green", "blue"}, 10, "A seeing B and C")
    await until(lambda: b.media.colours_seen() >= {"red", "blue"}, 10, "B seeing A and C")
    await until(lambda: c.media.colours_seen() >= {"red", "green"}, 10, "C seeing A and B")
    assert "red" not in a.media.colours_seen()
    assert "green" not in b.media.colours_seen()
    assert "blue" not in c.media.colours_seen()


async def test_three_people_hear_and_see_each_other(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    guest = guest_credentials(meeting)
    a = await room.member(guest, 440, "red")
    b = await room.member(guest, 880, "green")
    c = await room.member(await user_line(api, alice_token), None, "blue")
    await a.join("meeting-guest")
    await b.join("meeting-guest")
    await c.join(f"wazo-meeting-{meeting['uuid']}")

    # Each got his video slots by re-INVITE after the ACK, and a welcome listing the room.
    await until(lambda: all(m.call and m.call.reinvites >= 1 for m in (a, b, c)), 10, "the slot re-INVITEs")
    await until(lambda: bool(c.messages("ConfbridgeWelcome")), 10, "C's welcome")
    welcome = c.messages("ConfbridgeWelcome")[0]
    call_ids = {channel["channelvars"]["WAZO_SIP_CALL_ID"] for channel in welcome["channels"]}
    assert call_ids == {m.call.call_id for m in (a, b, c) if m.call}
    assert {"id", "caller", "talking_status", "channelvars"} <= set(welcome["channels"][0])
    assert a.messages("ConfbridgeJoin"), "A was told of the others joining"

    await hear_and_see_each_other(a, b, c)

    # The names on the tiles: the slot map names participants that exist.
    slots = a.messages("ConfbridgeVideoSlots")
    assert slots and set(slots[-1]["video_slots"].values()) - {None} <= {ch["id"] for ch in welcome["channels"]}

    participants = await api.call(
        "GET", f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants", alice_token
    )
    assert participants["total"] == 3
    assert {p["call_id"] for p in participants["items"]} == call_ids

    # B hangs up: the others are told, the room shrinks.
    assert b.call is not None
    assert (await b.sip.bye(b.call)).status == 200
    await until(lambda: bool(a.messages("ConfbridgeLeave")), 5, "A told of B leaving")
    participants = await api.call("GET", f"/api/calld/1.0/meetings/{meeting['uuid']}/participants", api.admin_token)
    assert participants["total"] == 2


async def test_phone_over_udp_hears_and_is_heard(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    browser = await room.member(guest_credentials(meeting), 440, "red")
    await browser.join("meeting-guest")

    phone_sip, phone = await phone_on_line(api, room, alice_token)
    try:
        assert (await phone_sip.register()).status == 200
        call = await phone_sip.invite(meeting["exten"], phone.offer().encode())
        answer = call.answer.decode()
        port = int(next(line for line in answer.splitlines() if line.startswith("m=audio")).split()[1])
        assert "RTP/AVP" in answer
        phone.start(("127.0.0.1", port))
        await browser_and_phone_hear_each_other(browser, phone)
        assert (await phone_sip.bye(call)).status == 200
    finally:
        await phone.close()
        await phone_sip.close()
