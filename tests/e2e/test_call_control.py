"""What the gateway answers and when it hangs up: dial plan refusals, the cap, kicks, deletion, expiry, and
nothing left running once everyone has gone."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import pytest

from gateway.app import CALL_CONTROL
from tests.conftest import Api, make_settings
from tests.e2e.conftest import Member, Room, guest_credentials, user_line
from tests.e2e.sipclient import CallRefused, SipClient
from tests.sfu.clients import RtpPhone, open_sockets
from tests.waiting import until


async def test_dial_plan_refusals(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    guest = await room.member(guest_credentials(meeting), None, "red")
    with pytest.raises(CallRefused) as refused:
        await guest.join(f"wazo-meeting-{meeting['uuid']}")
    assert refused.value.response.status == 403
    assert "meeting-guest" in (refused.value.response.header("Reason") or "")

    tenant = await api.create_tenant("acme")
    _, acme_token = await api.create_user("acme-user", tenant=tenant)
    outsider = await room.member(await user_line(api, acme_token), None, "blue")
    for extension in (f"wazo-meeting-{meeting['uuid']}", meeting["exten"], f"wazo-meeting-{uuid.uuid4()}", "nothing"):
        with pytest.raises(CallRefused) as refused:
            await outsider.join(extension)
        assert refused.value.response.status == 404, extension
        assert "Reason" in {name for name, _ in refused.value.response.headers}


async def test_deleted_meeting_guest_account_no_longer_authenticates(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", alice_token, expect=204)
    with pytest.raises(AssertionError, match=r"401|403"):
        await room.member(guest_credentials(meeting), None, None)


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(database_url, MEETINGS_MEETINGS__MAX_PARTICIPANTS="2", MEETINGS_MEETINGS__LAST_N="1")


async def test_the_cap_refuses_clearly_and_full_is_reported(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    status = f"/api/calld/1.0/guests/me/meetings/{meeting['uuid']}/status"
    members = [await room.member(guest_credentials(meeting), None, colour) for colour in ("red", "green", "blue")]
    await members[0].join("meeting-guest")
    assert await api.call("GET", status) == {"full": False}
    await members[1].join("meeting-guest")
    assert await api.call("GET", status) == {"full": True}
    with pytest.raises(CallRefused) as refused:
        await members[2].join("meeting-guest")
    assert refused.value.response.status == 486
    assert 'text="meeting is full"' in (refused.value.response.header("Reason") or "")
    # One leaves: there is room again.
    first = members[0]
    assert first.call is not None
    await first.sip.bye(first.call)
    await until(lambda: api.services.conferences.count(uuid.UUID(meeting["uuid"])) == 1, 5, "the seat to free")
    assert await api.call("GET", status) == {"full": False}


async def join_two(api: Api, room: Room, token: str, meeting: dict[str, Any]) -> list[Member]:
    members = [await room.member(guest_credentials(meeting), None, colour) for colour in ("red", "green")]
    for member in members:
        await member.join("meeting-guest")
    await until(lambda: api.services.conferences.count(uuid.UUID(meeting["uuid"])) == 2, 5, "two participants")
    return members


async def test_kick_hangs_up_one(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    kicked, stays = await join_two(api, room, alice_token, meeting)
    participants = await api.call(
        "GET", f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants", alice_token
    )
    target = next(p for p in participants["items"] if kicked.call and p["call_id"] == kicked.call.call_id)
    path = f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants/{target['id']}"
    await api.call("DELETE", path, alice_token, expect=204)
    assert kicked.call is not None and stays.call is not None
    await asyncio.wait_for(kicked.call.ended.wait(), 5)
    assert "kicked" in (kicked.call.bye_reason or "")
    await until(lambda: bool(stays.messages("ConfbridgeLeave")), 5, "the others told")
    assert not stays.call.ended.is_set()


async def test_delete_hangs_everyone_up_and_nothing_is_left_running(api: Api, room: Room) -> None:
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    sockets_before = open_sockets()
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    members = await join_two(api, room, alice_token, meeting)
    await asyncio.sleep(1)
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", alice_token, expect=204)
    for member in members:
        assert member.call is not None
        await asyncio.wait_for(member.call.ended.wait(), 5)
        assert "meeting deleted" in (member.call.bye_reason or "")
    for member in members:
        await member.close()
    room.members.clear()
    control = api.client.app[CALL_CONTROL]
    await until(lambda: not control.rooms and not control.media.sfu.rooms, 5, "the room to close")
    await asyncio.sleep(1)
    gc.collect()
    assert len(asyncio.all_tasks()) <= tasks_before + 1, asyncio.all_tasks()
    assert open_sockets() <= sockets_before


async def test_a_phone_gone_silent_holds_up_neither_the_others_hang_up_nor_the_participants_list(
    api: Api, room: Room
) -> None:
    """A UDP phone that vanished without a BYE would answer nothing for Timer F's 32 s: deletion must still hang
    the others up at once and empty the room within seconds."""
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    guest = guest_credentials(meeting)
    silent = SipClient(*guest, api.services.settings.sip.domain)
    await silent.connect_udp(room.udp_address)
    media = RtpPhone(None)
    await media.open()
    await silent.invite("meeting-guest", media.offer().encode())
    await media.close()
    await silent.close()  # gone: the server's BYE goes to a closed port
    member = await room.member(guest, None, None)
    await member.join("meeting-guest")
    participants = f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants"
    assert len((await api.call("GET", participants, alice_token))["items"]) == 2

    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", alice_token, expect=204)
    assert member.call is not None
    await asyncio.wait_for(member.call.ended.wait(), 3)
    control = api.client.app[CALL_CONTROL]
    await until(lambda: not control.rooms, 5, "the room to close despite the silent phone")


async def test_key_1_toggles_mute_like_wazo_menu(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    speaker, listener = await join_two(api, room, alice_token, meeting)
    assert speaker.call is not None
    assert (await speaker.sip.info_dtmf(speaker.call, "1")).status == 200
    await until(lambda: bool(listener.messages("ConfbridgeMute")), 5, "the mute to be told")
    assert listener.messages("ConfbridgeMute")[0]["channel"]["channelvars"]["WAZO_SIP_CALL_ID"] == speaker.call.call_id
    assert (await speaker.sip.info_dtmf(speaker.call, "1")).status == 200
    await until(lambda: bool(listener.messages("ConfbridgeUnmute")), 5, "the unmute to be told")


PICTURE_FAST_UPDATE = (
    b'<?xml version="1.0" encoding="utf-8" ?>\r\n<media_control><vc_primitive><to_encoder>'
    b"<picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n"
)


async def test_a_sip_info_picture_fast_update_asks_the_shown_publisher_for_a_keyframe(api: Api, room: Room) -> None:
    """RFC 5168, as video phones send it: the sources the sender's slots show are asked for a keyframe."""
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    red, green = await join_two(api, room, alice_token, meeting)
    assert red.call is not None and green.call is not None
    sfu_room = api.client.app[CALL_CONTROL].rooms[uuid.UUID(meeting["uuid"])].media_room.room
    by_call = {p.info["call_id"]: p for p in sfu_room.participants.values()}
    red_source = by_call[red.call.call_id].video_source
    assert red_source is not None
    await until(lambda: any(s.current is red_source for s in by_call[green.call.call_id].slots), 8, "green to see red")
    # keyframe requests upstream are rate-limited (one per source per 500 ms, whoever asks: a PLI from a client's
    # decoder just before would hold the INFO's back), so it is asked at a quiet moment, a few times at most
    for _ in range(5):
        await asyncio.sleep(0.6)
        before = red_source.keyframe_requests
        response = await green.sip.info(green.call, "application/media_control+xml", PICTURE_FAST_UPDATE)
        assert response.status == 200
        if red_source.keyframe_requests == before + 1:
            break
    else:
        raise AssertionError("the INFO never reached the shown publisher")
    # anything else in an INFO is not understood (415), and the call goes on
    assert (await green.sip.info(green.call, "text/plain", b"hello")).status == 415
    assert not green.call.ended.is_set()


async def test_an_h264_phone_is_asked_for_keyframes_by_sip_info_too_and_a_vp8_phone_by_rtcp_only(
    api: Api, room: Room
) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    sfu_room_of = api.client.app[CALL_CONTROL].rooms
    for codec, fmtp, infos_expected in (("H264", ["a=fmtp:97 packetization-mode=1"], 1), ("VP8", [], 0)):
        phone = SipClient(*await user_line(api, alice_token), api.services.settings.sip.domain)
        await phone.connect_udp(room.udp_address)
        try:
            assert (await phone.register()).status == 200
            head = ["v=0", "o=phone 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
            audio = ["m=audio 40000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000"]
            video = ["m=video 40002 RTP/AVP 97", f"a=rtpmap:97 {codec}/90000", *fmtp, "a=sendrecv"]
            call = await phone.invite(meeting["exten"], "\r\n".join([*head, *audio, *video, ""]).encode())
            sfu_room = sfu_room_of[uuid.UUID(meeting["uuid"])].media_room.room
            participant = next(p for p in sfu_room.participants.values() if p.info["call_id"] == call.call_id)
            assert participant.video_source is not None and participant.video_source.codec_name == codec
            participant.video_source.request_keyframe()  # its first: not held back by the rate limit
            infos = call.infos
            if infos_expected:
                await until(lambda infos=infos: bool(infos), 5, "the INFO")
                (info,) = infos
                assert info.header("Content-Type") == "application/media_control+xml"
                assert b"<picture_fast_update/>" in info.body
            else:
                await asyncio.sleep(0.5)
                assert not infos
            await phone.bye(call)
        finally:
            await phone.close()


@pytest.mark.parametrize(
    "offer",
    [
        b"",
        b"not sdp at all",
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 99\r\na=rtpmap:99 nothing/8000\r\n",
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio x UDP/TLS/RTP/SAVPF 111\r\n",
    ],
)
async def test_unusable_offers_are_refused_with_488(api: Api, room: Room, offer: bytes) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    member = await room.member(guest_credentials(meeting), None, None)
    with pytest.raises(CallRefused) as refused:
        await member.sip.invite("meeting-guest", offer)
    assert refused.value.response.status == 488, refused.value.response.first_line
    assert "Reason" in {name for name, _ in refused.value.response.headers}
    assert api.services.conferences.count(uuid.UUID(meeting["uuid"])) == 0


async def test_an_app_tells_its_microphone_and_camera_state_and_everyone_is_told(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    speaker, listener = await join_two(api, room, alice_token, meeting)
    assert speaker.call is not None
    state = b'{"type": "ParticipantState", "muted": true, "video_muted": true}'
    response = await speaker.sip.in_dialog(speaker.call, "MESSAGE", "application/json", state)
    assert response.status == 200
    await until(lambda: bool(listener.messages("ConfbridgeVideoMute")), 5, "the camera state to be told")
    await until(lambda: bool(listener.messages("ConfbridgeMute")), 5, "the mute to be told")
    told = listener.messages("ConfbridgeVideoMute")[0]["channel"]
    assert told["channelvars"]["WAZO_SIP_CALL_ID"] == speaker.call.call_id
    assert told["video_muted"] is True and told["muted"] is True
    # muted in the room itself: no longer mixed
    sfu_room = api.client.app[CALL_CONTROL].rooms[uuid.UUID(meeting["uuid"])].media_room.room
    assert next(p for p in sfu_room.participants.values() if p.info["call_id"] == speaker.call.call_id).muted

    unmute = b'{"type": "ParticipantState", "video_muted": false}'
    assert (await speaker.sip.in_dialog(speaker.call, "MESSAGE", "application/json", unmute)).status == 200
    await until(lambda: bool(listener.messages("ConfbridgeVideoUnmute")), 5, "the camera back on")
    # anything else in a MESSAGE is accepted and changes nothing; the call goes on
    assert (await speaker.sip.in_dialog(speaker.call, "MESSAGE", "application/json", b"{not json")).status == 200
    assert (await speaker.sip.in_dialog(speaker.call, "MESSAGE", "text/plain", b"hello")).status == 200
    assert not listener.messages("ConfbridgeUnmute")
    assert not speaker.call.ended.is_set()


async def test_the_organiser_mutes_someone_and_hands_go_up(api: Api, room: Room) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    speaker, listener = await join_two(api, room, alice_token, meeting)
    assert speaker.call is not None and listener.call is not None
    path = f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants"
    items = (await api.call("GET", path, alice_token))["items"]
    target = next(p["id"] for p in items if p["call_id"] == speaker.call.call_id)

    await api.call("PUT", f"{path}/{target}/mute", alice_token, expect=204)
    await until(lambda: bool(listener.messages("ConfbridgeMute")), 5, "the mute to be told")
    sfu_room = api.client.app[CALL_CONTROL].rooms[uuid.UUID(meeting["uuid"])].media_room.room
    assert sfu_room.participants[target].muted
    await api.call("PUT", f"{path}/{target}/unmute", alice_token, expect=204)
    await until(lambda: bool(listener.messages("ConfbridgeUnmute")), 5, "the unmute to be told")
    await api.call("PUT", f"{path}/nobody/mute", alice_token, expect=404)
    # only owners (and the tenant's administrators)
    _, bob_token = await api.create_user("bob")
    await api.call("PUT", f"{path}/{target}/mute", bob_token, expect=404)
    admin_path = f"/api/calld/1.0/meetings/{meeting['uuid']}/participants/{target}/mute"
    await api.call("PUT", admin_path, api.admin_token, expect=204)

    hand = b'{"type": "ParticipantState", "hand_raised": true}'
    assert (await speaker.sip.in_dialog(speaker.call, "MESSAGE", "application/json", hand)).status == 200
    await until(lambda: bool(listener.messages("ConfbridgeHandRaised")), 5, "the raised hand to be told")
    assert listener.messages("ConfbridgeHandRaised")[0]["channel"]["hand_raised"] is True
