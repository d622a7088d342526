"""Linphone's console client (linphonec 5.1): it registers with the meeting's guest account, dials meeting-guest,
hears the room and is heard, and is hung up with a reason when the meeting is deleted; a user's own line dials the
meeting's number."""

from __future__ import annotations

import asyncio
import re
import shutil
from uuid import UUID

import pytest

from tests.conftest import Api
from tests.e2e.conftest import Room, guest_credentials, user_line
from tests.phones.linphone import Linphone, account
from tests.phones.meeting import (
    PHONE_TONE,
    ROOM_TONE,
    assert_browser_hears_the_phone,
    delete_meeting,
    meeting_with_browser,
    sip_server,
)
from tests.phones.phone import heard, picture_colour, write_picture
from tests.waiting import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.phones,
    pytest.mark.skipif(shutil.which("linphonec") is None, reason="linphonec (Debian's linphone-cli) is not installed"),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_guest_dials_meeting_guest_hears_is_heard_and_is_hung_up_with_a_reason(
    api: Api, room: Room, linphone: Linphone, transport: str
) -> None:
    meeting, token, browser = await meeting_with_browser(api, room)
    domain = api.services.settings.sip.domain
    await linphone.start(account(*guest_credentials(meeting), domain, sip_server(api, transport), transport))
    linphone.type(f"call sip:meeting-guest@{domain}")
    await linphone.wait_for("Media streams established", 10)

    await asyncio.sleep(1.0)  # past the first mixes
    await assert_browser_hears_the_phone(browser)

    # The meeting is deleted: BYE with a Reason reaches the phone, which ends its call.
    await delete_meeting(api, meeting, token)
    await linphone.wait_for("ended", 10)
    bye = linphone.received("BYE")
    assert "Reason: Q.850;cause=16" in bye, bye
    # ...and the phone heard the browser's tone, not its own.
    assert heard(linphone.record_file, ROOM_TONE) > 0.2 and heard(linphone.record_file, PHONE_TONE) < 0.02
    # linphone answers the room updates (application/json MESSAGEs) 415: one was sent, then no more.
    assert linphone.count_received("MESSAGE") == 1


async def test_a_users_own_line_dials_the_meetings_number(api: Api, room: Room, linphone: Linphone) -> None:
    meeting, token, _ = await meeting_with_browser(api, room)
    domain = api.services.settings.sip.domain
    await linphone.start(account(*await user_line(api, token), domain, sip_server(api, "tcp"), "tcp"))
    linphone.type(f"call sip:{meeting['exten']}@{domain}")
    await linphone.wait_for("Media streams established", 10)
    listed = await api.call("GET", f"/api/calld/1.0/meetings/{meeting['uuid']}/participants", api.admin_token)
    me = await api.call("GET", "/api/confd/1.1/users/me", token)
    assert listed["total"] == 2 and me["uuid"] in {p["user_uuid"] for p in listed["items"]}

    await asyncio.sleep(1.5)  # some of the room's tone
    linphone.type("terminate")
    await linphone.wait_for("ended", 10)
    await until(lambda: api.services.conferences.count(UUID(meeting["uuid"])) == 1, 5, "the phone gone from the room")
    assert heard(linphone.record_file, ROOM_TONE) > 0.2


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "sdes-srtp"])
async def test_a_video_call_and_a_browser_see_each_other(
    api: Api, room: Room, linphone: Linphone, encrypted: bool
) -> None:
    """Plain RTP, or SDES-SRTP made mandatory in linphone (RTP/SAVP with a=crypto on both m-lines)."""
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    browser = await room.member(guest_credentials(meeting), ROOM_TONE, "red")
    await browser.join("meeting-guest")
    domain = api.services.settings.sip.domain
    picture = write_picture(linphone.folder / "camera.jpg", "green")
    srtp = ("media_encryption=srtp", "media_encryption_mandatory=1") if encrypted else ()
    await linphone.start(account(*guest_credentials(meeting), domain, sip_server(api, "udp"), "udp"), picture, srtp)
    linphone.type(f"call sip:meeting-guest@{domain}")
    await linphone.wait_for("Media streams established", 10)
    # The browser sees the phone's picture; the phone sees the browser's (a snapshot of what it shows).
    await until(lambda: "green" in browser.media.colours_seen(), 15, "the browser seeing the phone's picture")
    assert "red" not in browser.media.colours_seen()
    await assert_browser_hears_the_phone(browser)
    snapshot = linphone.folder / "seen.jpg"
    linphone.type(f"snapshot {snapshot}")
    await linphone.wait_for("Snapshot done", 10, debug=True)
    assert picture_colour(snapshot) == "red"
    if encrypted:
        log = linphone.debug_log.read_text(errors="replace")
        # the server's answer (in linphone's log of what it received): both streams encrypted, a key on each
        assert re.search(r"m=audio [1-9]\d* RTP/SAVP ", log) and re.search(r"m=video [1-9]\d* RTP/SAVP ", log)
        assert len(re.findall(r"a=crypto:\d+ AES_CM_128_HMAC_SHA1_(80|32) inline:", log)) >= 4  # offer and answer
