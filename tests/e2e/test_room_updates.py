"""Room updates (ConfBridge-style application/json MESSAGEs) go only to clients that take them: none to a caller
whose INVITE's Allow leaves MESSAGE out, none after a client refused one (405/415/501); the call goes on."""

from __future__ import annotations

from tests.conftest import Api
from tests.e2e.conftest import Room, guest_credentials
from tests.e2e.sipclient import SipClient
from tests.sfu.clients import RtpPhone
from tests.waiting import until


async def test_room_updates_stop_for_a_phone_that_refuses_them_and_skip_one_that_does_not_allow_message(
    api: Api, room: Room
) -> None:
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    guest = guest_credentials(meeting)
    browser = await room.member(guest, None, None)
    await browser.join("meeting-guest")
    phones: list[tuple[SipClient, RtpPhone]] = []
    try:
        for allow in ("INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE", "INVITE, ACK, BYE, CANCEL, OPTIONS"):
            sip = SipClient(*guest, api.services.settings.sip.domain)
            await sip.connect_udp(room.udp_address)
            media = RtpPhone(None)
            await media.open()
            phones.append((sip, media))
            sip.message_status = 415  # as baresip answers an application/json MESSAGE
            await sip.invite("meeting-guest", media.offer().encode(), [("Allow", allow)])
        refuser, no_message = phones[0][0], phones[1][0]
        await until(lambda: refuser.messages_received >= 1, 10, "the first room update to the refusing phone")

        # More updates: a member joins and leaves. The browser hears of both, the phones of nothing more.
        late = await room.member(guest, None, None)
        late_call = await late.join("meeting-guest")
        await until(lambda: len(browser.messages("ConfbridgeJoin")) >= 3, 10, "the browser told of the late joiner")
        assert (await late.sip.bye(late_call)).status == 200
        await until(lambda: len(browser.messages("ConfbridgeLeave")) >= 1, 10, "the browser told of the leaver")
        assert refuser.messages_received == 1
        assert no_message.messages_received == 0

        # Their calls go on: both are still in the meeting and hang up normally.
        listed = await api.call("GET", f"/api/calld/1.0/meetings/{meeting['uuid']}/participants", api.admin_token)
        assert listed["total"] == 3
        for sip, _ in phones:
            assert (await sip.bye(next(iter(sip.calls.values())))).status == 200
    finally:
        for sip, media in phones:
            await media.close()
            await sip.close()
