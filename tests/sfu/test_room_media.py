"""Rooms through real parts: aiortc peers and a UDP phone on 127.0.0.1, the SFU's real mixer and forwarder."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiortc import sdp as aiortc_sdp

from sfu import SFU, RoomFull, RoomOptions
from sfu.settings import MediaSettings
from tests.waiting import until

from .clients import RtpPhone, WebRtcClient, open_sockets, record, tone_power


def remote_of(answer: str) -> tuple[str, int]:
    description = aiortc_sdp.SessionDescription.parse(answer)
    media = description.media[0]
    return (media.host or description.host or "", media.port)


@pytest.mark.slow
async def test_each_hears_the_others_and_sees_the_others(sfu: SFU) -> None:
    room = sfu.room("tones", RoomOptions(last_n=2))
    a, b, c = WebRtcClient("A", 440, "red"), WebRtcClient("B", 880, "blue"), WebRtcClient("C", None, "green")
    try:
        for client in (a, b, c):
            await client.join(room)
        for client in (a, b, c):
            await client.accept_slots()
        # host candidates on the configured address, ports from the configured range, BUNDLE, one slot per m=video
        answer = a.pc.remoteDescription.sdp
        candidates = [line.split() for line in answer.splitlines() if line.startswith("a=candidate:")]
        assert candidates and all(c[4] == "127.0.0.1" and 31000 <= int(c[5]) <= 31999 for c in candidates)
        assert "a=group:BUNDLE" in answer and answer.count("m=video") == 3 and answer.count("a=sendonly") == 2
        assert answer.split("m=audio", 1)[1].split("m=", 1)[0].count("a=sendrecv") == 1
        expected = {a: {"blue", "green"}, b: {"red", "green"}, c: {"red", "blue"}}
        await until(lambda: all(cl.colours_seen() == colours for cl, colours in expected.items()), 8)
        await asyncio.sleep(0.5)
        await record(a, b, c)

        heard = {client: client.recorded() for client in (a, b, c)}
        assert len(heard[c]) > 48000
        assert tone_power(heard[c], 440) > 0.2 and tone_power(heard[c], 880) > 0.2
        assert tone_power(heard[a], 880) > 0.8 and tone_power(heard[a], 440) < 0.01
        assert tone_power(heard[b], 440) > 0.8 and tone_power(heard[b], 880) < 0.01
        for client, colours in expected.items():
            assert client.colours_seen() == colours
            seen_ever = {colour for frames in client.video.values() for colour in frames}
            assert seen_ever <= colours  # never his own picture
        # C is silent: his audio was never decoded (its RFC 6464 level says silence)
        member = room.mixer.members[c.participant.id]  # type: ignore[union-attr]
        assert member.decoded == 0
    finally:
        for client in (a, b, c):
            await client.close()


@pytest.mark.slow
async def test_plain_rtp_phone_hears_and_is_heard(sfu: SFU) -> None:
    room = sfu.room("phone", RoomOptions(video=False))
    a = WebRtcClient("A", 440, None)
    phone = RtpPhone(880)
    await phone.open()
    try:
        await a.join(room)
        participant, answer = await room.join_rtp(phone.offer(), {"name": "phone"})
        assert participant.kind == "rtp"
        assert "m=audio" in answer and "PCMU/8000" in answer
        phone.start(remote_of(answer))
        await asyncio.sleep(1.0)
        phone.received.clear()
        await record(a)
        assert tone_power(a.recorded(), 880) > 0.8 and tone_power(a.recorded(), 440) < 0.01
        heard = phone.decoded()
        assert len(heard) > 8000
        assert tone_power(heard, 440, 8000) > 0.8 and tone_power(heard, 880, 8000) < 0.01
    finally:
        await a.close()
        await phone.close()


async def test_dtmf_1_toggles_mute_and_a_reoffer_keeps_the_call_and_its_video_port(sfu: SFU) -> None:
    room = sfu.room("dtmf", RoomOptions())
    phone = RtpPhone(880)
    await phone.open()
    muted: list[bool] = []
    room.on("participant_muted", lambda participant, state: muted.append(state))
    try:
        participant, answer = await room.join_rtp(phone.offer(video=True))
        video_line = next(line for line in answer.splitlines() if line.startswith("m=video "))
        assert not video_line.startswith("m=video 0 "), "a phone's VP8 video is accepted"
        phone.start(remote_of(answer))
        await asyncio.sleep(0.1)
        phone.send_digit(1)
        await until(lambda: participant.muted, 2)
        phone.send_digit(1)
        await until(lambda: not participant.muted, 2)
        assert muted == [True, False]
        reanswer = await participant.handle_offer(phone.offer(video=True))
        assert reanswer.count("m=") == 2 and video_line in reanswer and "m=audio 0 " not in reanswer
        assert participant in room.participants.values()
    finally:
        await phone.close()


async def test_room_cap_raises_room_full(sfu: SFU) -> None:
    room = sfu.room("cap", RoomOptions(max_participants=2, video=False))
    phones = [RtpPhone(None) for _ in range(3)]
    for phone in phones:
        await phone.open()
    try:
        await room.join_rtp(phones[0].offer())
        assert not room.is_full
        await room.join_rtp(phones[1].offer())
        assert room.is_full
        with pytest.raises(RoomFull):
            await room.join_rtp(phones[2].offer())
        # a lower cap given at join applies too
        other = sfu.room("cap2", RoomOptions(max_participants=10))
        await other.join_rtp(phones[2].offer(), max_participants=1)
        assert other.is_full
        with pytest.raises(RoomFull):
            await other.join_rtp(phones[2].offer(), max_participants=1)
    finally:
        for phone in phones:
            await phone.close()


def media_threads() -> list[str]:
    """Threads other than the main one and the event loop's default executor (shared, kept for reuse)."""
    return [t.name for t in threading.enumerate() if t is not threading.main_thread() and "asyncio_" not in t.name]


def resources() -> tuple[int, int, int]:
    return len(asyncio.all_tasks()), open_sockets(), len(media_threads())


async def settle(baseline: tuple[int, int, int], within: float = 5.0) -> tuple[int, int, int]:
    for _ in range(int(within / 0.1)):
        if resources() == baseline:
            break
        await asyncio.sleep(0.1)
    return resources()


@pytest.mark.slow
async def test_kick_and_close_release_everything(settings: MediaSettings) -> None:
    baseline = resources()
    sfu = SFU(settings)
    room = sfu.room("release", RoomOptions(last_n=1))
    left: list[tuple[str, str]] = []
    room.on("participant_left", lambda participant, reason: left.append((participant.id, reason)))
    a, b = WebRtcClient("A", 440, "red"), WebRtcClient("B", None, "blue")
    phone = RtpPhone(None)
    await phone.open()
    pa = await a.join(room)
    await b.join(room)
    await a.accept_slots()
    await b.accept_slots()
    pp, answer = await room.join_rtp(phone.offer())
    phone.start(remote_of(answer))
    await until(lambda: bool(a.colours_seen()) and bool(b.colours_seen()), 8)
    assert resources()[0] > baseline[0] and resources()[1] > baseline[1]

    await room.kick(pa.id)
    assert pa.closed and pa.id not in room.participants
    assert left == [(pa.id, "kicked")]
    await pp.close()
    assert len(room.participants) == 1

    await sfu.close()
    assert room.closed and not room.participants and sfu.get("release") is None
    assert [reason for _, reason in left] == ["kicked", "left", "shutdown"]
    for client in (a, b):
        await client.close()
    await phone.close()
    assert await settle(baseline) == baseline, media_threads()


async def test_an_unusable_media_address_in_an_offer_never_breaks_the_room_s_audio(sfu: SFU) -> None:
    """A port outside 1-65535 once closed the leg's socket and made every mixer tick fail, for everyone; a host
    name would be resolved on every packet. Such a peer is answered where its packets come from instead."""
    room = sfu.room("bad-address", RoomOptions(video=False))
    listener, talker = RtpPhone(None), RtpPhone(440)
    for phone in (listener, talker):
        await phone.open()
    try:
        for bad in ("m=audio 70000 RTP/AVP 0", "c=IN IP4 phone.invalid\r\nm=audio 5000 RTP/AVP 0"):
            offer = talker.offer().replace(f"m=audio {talker.port} RTP/AVP 0 101", bad)
            odd, _ = await room.join_rtp(offer)
            assert odd.leg.remote is None  # type: ignore[attr-defined]
        _, answer = await room.join_rtp(talker.offer())
        talker.start(remote_of(answer))
        _, answer = await room.join_rtp(listener.offer())
        listener.start(remote_of(answer))
        await asyncio.sleep(1.5)
        heard = listener.decoded()
        assert heard.size > 8000 and tone_power(heard, 440, 8000) > 0.5
    finally:
        await talker.close()
        await listener.close()
