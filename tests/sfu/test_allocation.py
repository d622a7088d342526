"""Bandwidth per subscriber: the estimate's rule (sfu/bandwidth.py), the allocation of it among slots
(sfu/allocation.py), and a paused slot as the forwarder keeps it (sfu/forwarder.py): nothing sent, nothing asked
of the publisher, and back from a keyframe without a gap in the numbering."""

from __future__ import annotations

import time

import pytest
from aiortc.rtp import RtpPacket

from sfu import forwarder
from sfu.allocation import PAUSE_HOLD, RESUME_HEADROOM, BandwidthAllocator, Demand, allocate
from sfu.bandwidth import HOLD_AFTER_DECREASE, BandwidthEstimate
from sfu.forwarder import VideoSource
from sfu.pacer import Pacer

from .test_forwarder import slot_with_path
from .test_rtprewriter import rtp, vp8_payload

# allocation (pure)


def test_slots_are_served_in_order_and_one_that_does_not_fit_is_paused_while_smaller_ones_still_fit() -> None:
    demands = [Demand("speaker", 1_500_000), Demand("big", 1_200_000), Demand("small", 300_000)]
    assert allocate(2_000_000, demands, 100.0) == {"big"}
    assert allocate(1_000_000, demands, 100.0) == {"speaker", "big"}
    assert allocate(100_000, demands, 100.0) == {"speaker", "big", "small"}
    assert allocate(3_000_000, demands, 100.0) == set()


def test_a_paused_slot_resumes_only_with_headroom_within_what_was_proven_and_after_the_hold() -> None:
    paused = Demand("slot", 1_000_000, paused=True, paused_at=100.0)
    assert allocate(1_100_000, [paused], 200.0) == {"slot"}  # fits, not with the headroom
    assert allocate(1_000_000 * RESUME_HEADROOM, [paused], 200.0) == set()
    assert allocate(5_000_000, [paused], 100.0 + PAUSE_HOLD / 2) == {"slot"}  # too soon after the pause
    assert allocate(5_000_000, [paused], 200.0, proven=500_000) == {"slot"}  # the estimate was never tried
    running = Demand("slot", 1_000_000)
    assert allocate(1_000_000, [running], 200.0, proven=0) == set()  # what runs keeps running while it fits


# the estimate (pure)


def test_a_falling_remb_cuts_the_estimate_at_once_and_a_rising_one_does_not_raise_it() -> None:
    estimate = BandwidthEstimate(2_000_000)
    estimate.update(0.0, sent=2_000_000)
    estimate.on_remb(2_500_000, [1, 2], 0.0)
    assert estimate.bitrate == 2_000_000
    estimate.on_remb(1_250_000, [1, 2], 0.1)  # the receiver saw a queue: down to what it says
    assert estimate.bitrate == 1_250_000 and estimate.decreases == 1
    estimate.on_remb(5_000_000, [1, 2], 5.0)
    assert estimate.bitrate <= 1_250_000 * 1.25  # a second's growth at most
    # another receiver's REMB (aiortc sends one per receiver) is compared with its own previous one, and the
    # link's REMB is their sum
    estimate.on_remb(400_000, [3], 5.1)
    assert estimate.decreases == 1
    estimate.on_remb(200_000, [3], 5.5)  # fell, but the link's 5.2 Mbit/s is above the estimate
    assert estimate.decreases == 1
    estimate.on_remb(500_000, [1, 2], 5.6)
    assert estimate.decreases == 2 and estimate.bitrate == 700_000


def test_loss_cuts_to_what_was_sent_and_growth_waits_then_stays_within_what_was_sent() -> None:
    estimate = BandwidthEstimate(6_000_000)
    estimate.update(0.0, sent=2_000_000)
    estimate.on_report(0.5, None, 0.0)  # half lost: what was sent less a quarter
    assert estimate.bitrate == 1_500_000
    estimate.on_report(0.05, None, 0.5)  # some loss: hold
    estimate.update(2.0, sent=1_000_000)
    assert estimate.bitrate == 1_500_000
    estimate.on_report(0.0, None, 2.5)
    estimate.update(3.5, sent=1_000_000)  # no loss: grows, but not past 1.5 times what was sent
    assert estimate.bitrate == 1_500_000
    estimate.update(4.5, sent=1_400_000)
    assert 1_500_000 < estimate.bitrate <= 2_100_000


def test_a_round_trip_growing_by_a_queue_cuts_and_growth_resumes_after_the_hold() -> None:
    estimate = BandwidthEstimate(1_000_000)
    estimate.update(0.0, sent=1_000_000)
    estimate.on_report(0.0, 0.02, 0.0)
    before = estimate.update(1.0)
    estimate.on_report(0.0, 0.40, 1.0)
    cut = estimate.bitrate
    assert cut == before * 0.85
    estimate.on_report(0.0, 0.03, 1.2)
    estimate.update(1.0 + HOLD_AFTER_DECREASE / 2, sent=1_000_000)
    assert estimate.bitrate == cut
    estimate.update(1.0 + HOLD_AFTER_DECREASE + 1.0, sent=1_000_000)
    assert estimate.bitrate > cut


# a paused slot


def test_a_paused_slot_sends_nothing_asks_nothing_and_resumes_from_a_keyframe_without_a_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forwarder, "KEYFRAME_REQUEST_INTERVAL", 0.0)  # each request reaches the publisher
    requests: list[float] = []
    source = VideoSource("a", "VP8", lambda: requests.append(time.monotonic()))
    slot, path = slot_with_path()
    slot.assign(source)
    source.on_packet(rtp(vp8_payload(1, key=True), 10, 0, arrival=time.monotonic()))
    source.on_packet(rtp(vp8_payload(2), 11, 3000, arrival=time.monotonic()))
    assert len(path.rtp) == 2
    asked = len(requests)

    assert slot.set_paused(True) and not slot.set_paused(True)
    for seq in range(12, 80):  # a long stretch: the keyframe is no longer all there is to replay
        source.on_packet(rtp(vp8_payload(seq), seq, seq * 3000, arrival=time.monotonic()))
    assert len(path.rtp) == 2 and len(requests) == asked

    assert slot.set_paused(False)
    source.on_packet(rtp(vp8_payload(80), 80, 80 * 3000, arrival=time.monotonic()))
    assert len(path.rtp) == 2, "a delta frame is of no use after a pause"
    assert len(requests) > asked, "a keyframe is asked for"
    source.on_packet(rtp(vp8_payload(81, key=True), 81, 81 * 3000, arrival=time.monotonic()))
    assert len(path.rtp) == 3
    sequences = [RtpPacket.parse(data).sequence_number for data in path.rtp]
    assert sequences[2] == (sequences[1] + 1) & 0xFFFF


def test_a_paused_slot_resumes_at_once_from_a_keyframe_that_just_came() -> None:
    source = VideoSource("a", "VP8", lambda: None)
    slot, path = slot_with_path()
    slot.assign(source)
    slot.set_paused(True)
    source.on_packet(rtp(vp8_payload(1, key=True), 10, 0, arrival=time.monotonic()))
    assert path.rtp == []
    slot.set_paused(False)
    assert len(path.rtp) == 1


# the allocator on real slots


def test_the_allocator_pauses_what_the_estimate_cannot_carry_and_resumes_it_once_proven() -> None:
    sources = [VideoSource(name, "VP8", lambda: None) for name in ("speaker", "other")]
    slots = []
    for source in sources:
        slot, _ = slot_with_path()
        slot.assign(source)
        slots.append(slot)
    allocator = BandwidthAllocator()
    pacer = Pacer(BandwidthEstimate(1_000_000))
    start = time.monotonic()
    changes = []
    for step in range(4):  # each source sends 100 packets of 1,000 bytes a second (about 850 kbit/s with overhead)
        now = start + step
        for source in sources:
            source.octets += 100_000
            source.packets += 100
        allocator.measure(sources, now)
        pacer.bytes_sent += 125_000  # 1 Mbit/s sent
        changes.append(allocator.apply(pacer, slots, now))
        if step == 0:
            assert not any(slot.paused for slot in slots), "a running slot is paused only once it did not fit a while"
    assert [slot.paused for slot in slots] == [False, True] and changes.count(True) == 1
    pacer.estimate.bitrate = 3_000_000
    now = start + 4 + PAUSE_HOLD
    pacer.bytes_sent += 125_000 * int(1 + PAUSE_HOLD)
    assert not allocator.apply(pacer, slots, now), "not proven: 1 Mbit/s sent"
    resumed = []
    for step in range(1, 6):  # the probe has 2.4 Mbit/s sent: that is proven
        pacer.estimate.bitrate = 3_000_000
        pacer.bytes_sent += 300_000
        resumed.append(allocator.apply(pacer, slots, now + step))
    assert resumed.count(True) == 1
    # a rate sent for a second or two is not yet proven: the receiver's word on its loss comes later than that
    assert resumed[:2] == [False, False], resumed
    assert [slot.paused for slot in slots] == [False, False]
