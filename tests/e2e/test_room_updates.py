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


async def test_chat_reaches_the_apps_as_json_and_a_phone_as_text_and_back(api: Api, room: Room) -> None:
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    guest = guest_credentials(meeting)
    writer = await room.member(guest, None, None)
    reader = await room.member(guest, None, None)
    await writer.join("meeting-guest")
    await reader.join("meeting-guest")
    phone = SipClient(*guest, api.services.settings.sip.domain)
    await phone.connect_udp(room.udp_address)
    media = RtpPhone(None)
    await media.open()
    try:
        phone.message_status = 415  # takes no JSON, shows text (as phones that display messages do)
        phone_call = await phone.invite("meeting-guest", media.offer().encode())
        await until(lambda: phone.messages_received >= 1, 10, "the phone to refuse its first room update")
        assert writer.call is not None
        line = b'{"type": "Chat", "text": "  hello \\u0007everyone  "}'
        assert (await writer.sip.in_dialog(writer.call, "MESSAGE", "application/json", line)).status == 200
        await until(lambda: bool(reader.messages("ConfbridgeChat")), 5, "the chat line to the other app")
        (said,) = reader.messages("ConfbridgeChat")
        assert said["text"] == "hello everyone"  # trimmed, control characters out
        assert said["channel"]["channelvars"]["WAZO_SIP_CALL_ID"] == writer.call.call_id
        await until(lambda: bool(writer.messages("ConfbridgeChat")), 5, "the writer's own line back")
        await until(lambda: bool(phone_call.texts), 5, "the chat line to the phone, as text")
        assert phone_call.texts[0].endswith(": hello everyone")

        # the phone writes back in plain text: the apps get it as chat
        sent = await phone.in_dialog(phone_call, "MESSAGE", "text/plain", b"hi from the phone")
        assert sent.status == 200
        await until(lambda: len(reader.messages("ConfbridgeChat")) == 2, 5, "the phone's line to the apps")
        assert reader.messages("ConfbridgeChat")[1]["text"] == "hi from the phone"
    finally:
        await media.close()
        await phone.close()
