"""Video slots: a source's recent keyframe (its packets) is replayed to a slot assigned moments later, not when old;
a source that leaves keeps the last picture until another source's keyframe."""

from __future__ import annotations

import time

import pytest
from aiortc.rtp import RtpPacket

from sfu import forwarder
from sfu.forwarder import VideoSlot, VideoSource
from sfu.rtprewriter import Vp8Descriptor
from sfu.rtpsender import SlotSender

from .test_rtprewriter import _Path, rtp, vp8_payload


def slot_with_path() -> tuple[VideoSlot, _Path]:
    path = _Path()
    slot = VideoSlot(0, "3", "VP8")
    slot.active = True
    slot.sender = SlotSender(path, 1, 96)
    return slot, path


def test_a_recent_keyframe_is_replayed_as_packets_and_a_closed_source_waits_for_another() -> None:
    requests: list[str] = []
    a = VideoSource("a", "VP8", lambda: requests.append("a"))
    now = time.monotonic()
    a.on_packet(rtp(vp8_payload(1, key=True), 10, 0, marker=0, arrival=now))
    a.on_packet(rtp(vp8_payload(1, start=False), 11, 0, arrival=now))
    a.on_packet(rtp(vp8_payload(2), 12, 3000, arrival=now))
    assert a.frames == 2 and a.keyframes == 1
    slot, path = slot_with_path()
    slot.assign(a)
    assert slot.current is a and requests == [] and len(path.rtp) == 3  # started at once, nothing asked
    assert [RtpPacket.parse(d).timestamp - RtpPacket.parse(path.rtp[0]).timestamp for d in path.rtp] == [0, 0, 3000]

    a.close()
    assert slot.current is None
    b = VideoSource("b", "VP8", lambda: requests.append("b"))
    slot.assign(b)
    assert requests == ["b"] and slot.pending is b
    b.on_packet(rtp(vp8_payload(9), 70, 5000, ssrc=5))
    assert len(path.rtp) == 3
    b.on_packet(rtp(vp8_payload(10, key=True), 71, 8000, ssrc=5))
    assert len(path.rtp) == 4 and slot.current is b


def test_a_keyframe_too_old_is_not_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forwarder, "RECENT_KEYFRAME_AGE", 0.0)
    requests = []
    a = VideoSource("a", "VP8", lambda: requests.append(1))
    a.on_packet(rtp(vp8_payload(1, key=True), 1, 0))
    a.on_packet(rtp(vp8_payload(2), 2, 3000))
    slot, path = slot_with_path()
    slot.assign(a)
    assert slot.pending is a and requests == [1] and path.rtp == []
    a.on_packet(rtp(vp8_payload(3), 3, 6000))
    a.on_packet(rtp(vp8_payload(4, key=True), 4, 9000))
    assert len(path.rtp) == 1


def test_an_h264_keyframe_s_idr_after_its_sps_does_not_restart_the_replay() -> None:
    a = VideoSource("a", "H264", lambda: None)
    now = time.monotonic()
    for seq, payload, marker in ((1, b"\x67sps", 0), (2, b"\x68pps", 0), (3, b"\x65idr", 1), (4, b"\x41p", 1)):
        data = RtpPacket(payload_type=97, marker=marker, sequence_number=seq, timestamp=seq // 4, payload=payload)
        packet = forwarder.MediaPacket.parse(data.serialize(), "H264", now)
        assert packet is not None
        a.on_packet(packet)
    assert a.keyframes == 1 and [p.sequence for p in a.recent_packets()] == [1, 2, 3, 4]


def test_a_switch_waits_for_the_end_of_the_frame_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    a = VideoSource("a", "VP8", lambda: None)
    b = VideoSource("b", "VP8", lambda: None)
    slot, path = slot_with_path()
    now = time.monotonic()
    a.on_packet(rtp(vp8_payload(1, key=True), 1, 0, arrival=now))
    slot.assign(a)
    a.on_packet(rtp(vp8_payload(2), 2, 3000, marker=0, arrival=now))  # the first half of a frame is sent
    slot.assign(b)
    b.on_packet(rtp(vp8_payload(7, key=True), 40, 0, ssrc=5, marker=0, arrival=now))
    b.on_packet(rtp(vp8_payload(7, start=False), 41, 0, ssrc=5, arrival=now))
    assert len(path.rtp) == 2 and slot.current is a  # b's keyframe waits for the end of a's frame
    a.on_packet(rtp(vp8_payload(2, start=False), 3, 3000, arrival=now))
    assert slot.current is b and len(path.rtp) == 5
    sent = [RtpPacket.parse(d) for d in path.rtp]
    assert [p.marker for p in sent] == [1, 0, 1, 0, 1]
    assert [(p.sequence_number - sent[0].sequence_number) & 0xFFFF for p in sent] == [0, 1, 2, 3, 4]
    a.on_packet(rtp(vp8_payload(3), 4, 6000, arrival=now))
    assert len(path.rtp) == 5

    # a source that stops in the middle of a frame holds the switch back only for a moment
    c = VideoSource("c", "VP8", lambda: None)
    b.on_packet(rtp(vp8_payload(8), 42, 3000, ssrc=5, marker=0, arrival=now))
    slot.assign(c)
    c.on_packet(rtp(vp8_payload(1, key=True), 9, 0, ssrc=6, arrival=now))
    assert slot.current is b
    monkeypatch.setattr(forwarder, "FRAME_END_WAIT", 0.0)
    c.on_packet(rtp(vp8_payload(2), 10, 3000, ssrc=6, arrival=now))
    assert slot.current is c and len(path.rtp) == 8


def test_a_slot_whose_path_is_not_connected_yet_starts_from_a_keyframe_once_it_is() -> None:
    requests: list[int] = []
    a = VideoSource("a", "VP8", lambda: requests.append(1))
    slot, path = slot_with_path()
    path.up = False
    now = time.monotonic()
    a.on_packet(rtp(vp8_payload(1, key=True), 1, 0, arrival=now))
    slot.assign(a)  # the replay of a's keyframe reaches nobody
    for seq in (2, 3, 4):
        a.on_packet(rtp(vp8_payload(seq), seq, 3000 * seq, arrival=now))
    assert path.rtp == [] and requests == []  # and no keyframe is asked for meanwhile
    path.up = True
    a.on_packet(rtp(vp8_payload(5), 5, 15000, arrival=now))
    sent = [RtpPacket.parse(d) for d in path.rtp]
    assert len(sent) == 5 and Vp8Descriptor(sent[0].payload).keyframe  # from the keyframe on
    assert [(p.sequence_number - sent[0].sequence_number) & 0xFFFF for p in sent] == [0, 1, 2, 3, 4]
    assert slot.current is a and requests == []
