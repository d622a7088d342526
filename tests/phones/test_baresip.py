"""baresip 1.0, as a new user would set it up (Debian's package, default server settings): it registers with the
meeting's guest account, dials meeting-guest, hears the room and is heard, and is hung up with a reason when the
meeting is deleted; a user's own line dials the meeting's number."""

from __future__ import annotations

import asyncio
import shutil
from uuid import UUID

import pytest

from tests.conftest import Api
from tests.e2e.conftest import Room, guest_credentials, user_line
from tests.phones.baresip import Baresip, account_line
from tests.phones.meeting import (
    PHONE_TONE,
    ROOM_TONE,
    assert_browser_hears_the_phone,
    delete_meeting,
    meeting_with_browser,
    sip_server,
)
from tests.phones.phone import heard
from tests.waiting import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.phones,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian's baresip-core) is not installed"),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_guest_dials_meeting_guest_hears_is_heard_and_is_hung_up_with_a_reason(
    api: Api, room: Room, baresip: Baresip, transport: str
) -> None:
    meeting, token, browser = await meeting_with_browser(api, room)
    domain = api.services.settings.sip.domain
    await baresip.start()
    await baresip.add_account(account_line(*guest_credentials(meeting), domain, sip_server(api, transport), transport))
    await until(lambda: bool(baresip.saw("REGISTER_OK")), 10, "baresip registered")
    assert (await baresip.command("dial meeting-guest"))["ok"]
    await until(lambda: bool(baresip.saw("CALL_ESTABLISHED")), 10, "baresip's call established")

    await asyncio.sleep(1.0)  # past the first mixes
    await assert_browser_hears_the_phone(browser)

    # The meeting is deleted: BYE with a Reason reaches the phone, which ends its call.
    await delete_meeting(api, meeting, token)
    await until(lambda: bool(baresip.saw("CALL_CLOSED")), 10, "baresip's call closed")
    log = baresip.log_text()
    bye = log[log.index("\nBYE sip:") :]
    assert "Reason: Q.850;cause=16" in bye[: bye.index("\n\n")], bye[:600]
    # ...and the phone heard the browser's tone, not its own.
    assert heard(baresip.recording(), ROOM_TONE) > 0.2 and heard(baresip.recording(), PHONE_TONE) < 0.02
    # baresip answers the room updates (application/json MESSAGEs) 415: one was sent, then no more.
    assert baresip.received("MESSAGE") == 1


async def test_a_users_own_line_dials_the_meetings_number(api: Api, room: Room, baresip: Baresip) -> None:
    meeting, token, _ = await meeting_with_browser(api, room)
    domain = api.services.settings.sip.domain
    await baresip.start()
    await baresip.add_account(account_line(*await user_line(api, token), domain, sip_server(api, "udp"), "udp"))
    await until(lambda: bool(baresip.saw("REGISTER_OK")), 10, "baresip registered")
    assert (await baresip.command(f"dial {meeting['exten']}"))["ok"]
    await until(lambda: bool(baresip.saw("CALL_ESTABLISHED")), 10, "baresip's call established")
    participants = f"/api/calld/1.0/meetings/{meeting['uuid']}/participants"
    listed = await api.call("GET", participants, api.admin_token)
    assert listed["total"] == 2
    me = await api.call("GET", "/api/confd/1.1/users/me", token)
    assert me["uuid"] in {p["user_uuid"] for p in listed["items"]}

    await asyncio.sleep(1.5)  # some of the room's tone
    assert (await baresip.command("hangup"))["ok"]
    await until(lambda: bool(baresip.saw("CALL_CLOSED")), 10, "baresip's call closed")
    assert heard(baresip.recording(), ROOM_TONE) > 0.2
    await until(lambda: api.services.conferences.count(UUID(meeting["uuid"])) == 1, 5, "the phone gone from the room")


async def test_the_phones_call_quality_from_its_rtcp(api: Api, room: Room, baresip: Baresip) -> None:
    """baresip's receiver reports about the mix (to the port above the server's RTP port) give its round trip and
    loss in the participants API; the server counts what baresip sends."""
    meeting, _, browser = await meeting_with_browser(api, room)
    domain = api.services.settings.sip.domain
    await baresip.start()
    await baresip.add_account(account_line(*guest_credentials(meeting), domain, sip_server(api, "udp"), "udp"))
    await until(lambda: bool(baresip.saw("REGISTER_OK")), 10, "baresip registered")
    assert (await baresip.command("dial meeting-guest"))["ok"]
    await until(lambda: bool(baresip.saw("CALL_ESTABLISHED")), 10, "baresip's call established")
    assert browser.call is not None
    path = f"/api/calld/1.0/meetings/{meeting['uuid']}/participants"
    deadline = asyncio.get_running_loop().time() + 40  # reports every 5 s or so, each way
    while True:
        listed = await api.call("GET", path, api.admin_token)
        (phone,) = [item for item in listed["items"] if item["call_id"] != browser.call.call_id]
        quality = phone["call_quality"]
        if quality["round_trip_time"] is not None and quality["audio"]["out"]["fraction_lost"] is not None:
            break
        assert asyncio.get_running_loop().time() < deadline, quality
        await asyncio.sleep(1.0)
    assert 0 <= quality["round_trip_time"] < 0.5  # loopback
    audio = quality["audio"]
    assert audio["in"]["bitrate"] > 32000 and audio["in"]["packets_lost"] == 0  # G.711: 64 kbit/s of payload
    assert audio["out"]["packets"] > 0 and audio["out"]["fraction_lost"] == 0 and audio["out"]["packets_lost"] == 0
    assert audio["out"]["jitter"] is not None and audio["out"]["jitter"] < 0.1
    assert (await baresip.command("hangup"))["ok"]
    await until(lambda: bool(baresip.saw("CALL_CLOSED")), 10, "baresip's call closed")
