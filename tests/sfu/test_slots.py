"""Selective video through real peers: follow the talker, switch on a keyframe, never a broken picture."""

from __future__ import annotations

import logging

import pytest

from sfu import SFU, RoomOptions
from tests.waiting import until

from .clients import ToneTrack, WebRtcClient


def tone_of(client: WebRtcClient) -> ToneTrack:
    track = next(s.track for s in client.pc.getSenders() if s.track is not None and s.track.kind == "audio")
    assert isinstance(track, ToneTrack)
    return track


@pytest.mark.slow
async def test_follow_talker_switches_to_the_new_speaker(sfu: SFU, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc")
    room = sfu.room("follow", RoomOptions(last_n=1))
    talking: list[tuple[str, str]] = []
    room.on("talking_started", lambda p: talking.append((p.info["name"], "started")))
    room.on("talking_stopped", lambda p: talking.append((p.info["name"], "stopped")))
    a, b, c = WebRtcClient("A", 440, "red"), WebRtcClient("B", None, "blue"), WebRtcClient("C", None, "green")
    try:
        for client in (a, b, c):
            await client.join(room)
        for client in (a, b, c):
            await client.accept_slots()
        assert all(len(p.slots) == 1 and p.slots[0].active for p in room.participants.values())
        await until(lambda: ("A", "started") in talking, 3)
        await until(lambda: c.colours_seen() == {"red"} and b.colours_seen() == {"red"}, 8)
        assert a.colours_seen() <= {"blue", "green"}

        pb = b.participant
        assert pb is not None and pb.video_source is not None
        requests_before = pb.video_source.keyframe_requests
        tone_of(a).frequency = None
        tone_of(b).frequency = 880
        await until(lambda: ("B", "started") in talking, 3)
        await until(lambda: c.colours_seen() == {"blue"}, 8)
        # the switch started from a keyframe: asked for at once, or one that had come moments before (B's own
        # slot was just negotiated, which asks the sources it will show for one); no decoding error either way
        assert pb.video_source.keyframe_requests > requests_before or slot_switched_from_recent(c)
        # A now sees B, the most recent speaker other than himself
        await until(lambda: a.colours_seen() == {"blue"}, 8)
        slot = c.participant.slots[0]  # type: ignore[union-attr]
        assert slot.current is pb.video_source and slot.switches >= 2
        await until(lambda: ("A", "stopped") in talking, 3)
        # the subscribers' decoders never saw a frame they could not decode
        assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]
    finally:
        for client in (a, b, c):
            await client.close()


def slot_switched_from_recent(client: WebRtcClient) -> bool:
    slot = client.participant.slots[0]  # type: ignore[union-attr]
    return slot.pending is None and slot.switches >= 2


@pytest.mark.slow
async def test_a_pinned_participant_keeps_a_slot_whoever_speaks(sfu: SFU) -> None:
    room = sfu.room("pin", RoomOptions(last_n=1))
    a, b, c = WebRtcClient("A", 440, "red"), WebRtcClient("B", None, "blue"), WebRtcClient("C", None, "green")
    try:
        for client in (a, b, c):
            await client.join(room)
        for client in (a, b, c):
            await client.accept_slots()
        await until(lambda: c.colours_seen() == {"red"}, 8)  # A speaks: C's one slot shows A
        assert b.participant is not None and c.participant is not None
        c.participant.pin(b.participant.id)
        await until(lambda: "blue" in c.colours_seen(), 8)
        assert c.participant.slots[0].target is b.participant.video_source  # pinned, though A still speaks
        assert a.participant is not None
        assert b.participant.slots[0].target is a.participant.video_source  # the others still follow the speaker
        c.participant.pin(None)
        viewer, speaker = c.participant, a.participant
        await until(lambda: viewer.slots[0].target is speaker.video_source, 8)
    finally:
        for client in (a, b, c):
            await client.close()


async def test_audio_only_room_offers_no_slots(sfu: SFU) -> None:
    room = sfu.room("audio-only", RoomOptions(video=False))
    a = WebRtcClient("A", None, "red")
    try:
        participant = await a.join(room)
        assert participant.slot_count == 0
        assert participant.video_source is None
        assert "a=inactive" in a.pc.remoteDescription.sdp  # his camera is refused, not received for nothing
    finally:
        await a.close()
