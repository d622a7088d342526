"""Selective video through real peers: follow the talker, switch on a keyframe, never a broken picture."""

from __future__ import annotations

import logging

import pytest

from sfu import SFU, RoomOptions, sdp
from tests.waiting import until

from .clients import RtpPhone, ToneTrack, WebRtcClient, speaker_and_two_viewers


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
    async with speaker_and_two_viewers(room) as (a, b, c):
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


def slot_switched_from_recent(client: WebRtcClient) -> bool:
    slot = client.participant.slots[0]  # type: ignore[union-attr]
    return slot.pending is None and slot.switches >= 2


@pytest.mark.slow
async def test_a_pinned_participant_keeps_a_slot_whoever_speaks(sfu: SFU) -> None:
    room = sfu.room("pin", RoomOptions(last_n=1))
    async with speaker_and_two_viewers(room) as (a, b, c):  # A speaks: C's one slot shows A
        assert b.participant is not None and c.participant is not None
        c.participant.pin(b.participant.id)
        await until(lambda: "blue" in c.colours_seen(), 8)
        assert c.participant.slots[0].target is b.participant.video_source  # pinned, though A still speaks
        assert a.participant is not None
        assert b.participant.slots[0].target is a.participant.video_source  # the others still follow the speaker
        c.participant.pin(None)
        viewer, speaker = c.participant, a.participant
        await until(lambda: viewer.slots[0].target is speaker.video_source, 8)


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


def labels_and_msids(offer: str) -> dict[str, tuple[str | None, str | None]]:
    """{mid: (a=label, a=msid)} of the offer's sendonly video m-lines (the slots)."""
    slots = {}
    for section in offer.split("\r\nm=")[1:]:
        lines = section.split("\r\n")
        if not lines[0].startswith("video ") or "a=sendonly" not in lines:
            continue
        values = dict(line.partition(":")[::2] for line in lines if line.startswith("a="))
        slots[values["a=mid"]] = (values.get("a=label"), values.get("a=msid"))
    return slots


def test_labels_are_written_after_the_mid_in_place_of_any() -> None:
    text = "v=0\r\nm=audio 9 X 0\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\na=label:old\r\na=sendonly\r\n"
    labelled = sdp.set_labels(text, {"1": "p-2"})
    assert labelled == text.replace("a=mid:1\r\na=label:old", "a=mid:1\r\na=label:p-2")
    assert sdp.set_labels(text, {}) == text


@pytest.mark.slow
async def test_slots_come_with_the_cameras_labelled_and_a_newcomer_s_is_announced_afresh(sfu: SFU) -> None:
    room = sfu.room("labels", RoomOptions(last_n=2))
    listener = WebRtcClient("L", None, None)
    a, b, c = WebRtcClient("A", None, "red"), WebRtcClient("B", None, "blue"), WebRtcClient("C", None, "green")
    phone = RtpPhone(None)
    await phone.open()
    try:
        pl = await listener.join(room)
        assert pl.slot_count == 0 and not pl.wants_offer  # nobody's camera to show
        pa = await a.join(room)
        assert pl.missing_slots == 1 and pa.missing_slots == 0  # the listener has no camera
        pb = await b.join(room)
        assert (pl.missing_slots, pa.missing_slots, pb.missing_slots) == (2, 1, 1)
        for client in (listener, a, b):
            await client.accept_slots()
        first = labels_and_msids(listener.offers[-1])
        assert sorted(label for label, _ in first.values()) == sorted([pa.id, pb.id])
        await until(lambda: listener.colours_seen() == {"red", "blue"}, 8)
        # each slot shows the participant it was labelled for
        assert {slot.mid: slot.target.owner_id for slot in pl.slots if slot.target} == {
            mid: label for mid, (label, _) in first.items()
        }

        # B leaves and C comes: no slot more; B's slot shows C, and is announced afresh for him (new msid)
        await pb.close("left")
        pc = await c.join(room)
        assert pl.missing_slots == 0 and pl.slot_count == 2
        await until(lambda: pl.wants_offer, 8, "C's first frame to put him in B's slot")
        await listener.accept_slots()
        second = labels_and_msids(listener.offers[-1])
        (mid,) = [m for m, (label, _) in first.items() if label == pb.id]
        assert second[mid][0] == pc.id and second[mid][1] != first[mid][1]
        (other,) = [m for m in first if m != mid]
        assert second[other] == first[other]  # A's slot as it was
        assert not pl.wants_offer
        await until(lambda: "green" in listener.colours_seen(), 8)

        # a phone's slot comes in its own answer and is never announced by an offer, whoever it shows
        phone_participant, _ = await room.join_rtp(phone.offer(video=True))
        await until(lambda: any(slot.target is not None for slot in phone_participant.slots), 8)
        assert not phone_participant.wants_offer
    finally:
        for client in (listener, a, b, c):
            await client.close()
        await phone.close()
