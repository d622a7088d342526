"""Keyframe requests per subscriber: retransmission first, at most one keyframe a second for one bad link.

Through the real parts of the send path: a publisher's `VideoSource`, a subscriber's `VideoSlot` and `SlotSender`
(whose packets land in a list instead of a socket), fed the RTCP a subscriber sends (NACK, PLI) as bytes.
"""

from __future__ import annotations

import time

from aiortc.rtp import RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from sfu.forwarder import KEYFRAME_REQUEST_INTERVAL, VideoSlot, VideoSource
from sfu.keyframerequests import REPAIR_MIN, SUBSCRIBER_KEYFRAME_INTERVAL, repair_time
from sfu.rtpsender import HISTORY_SIZE, SlotSender

from .test_rtprewriter import _Path, rtp, vp8_payload

SSRC = 4242
PLI = bytes(RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=SSRC))


def nack(*sequences: int) -> bytes:
    return bytes(RtcpRtpfbPacket(fmt=1, ssrc=9, media_ssrc=SSRC, lost=list(sequences)))


class Publisher:
    """A camera sending 30 frames a second, one packet each, with a keyframe when asked (on its next frame)."""

    def __init__(self) -> None:
        self.asked = 0
        self.keyframes_sent = 0
        self.source = VideoSource("publisher", "VP8", self._asked)
        self.sequence = 100
        self._key_due = True

    def _asked(self) -> None:
        self.asked += 1
        self._key_due = True

    def frame(self) -> None:
        key, self._key_due = self._key_due, False
        self.keyframes_sent += key
        self.sequence += 1
        arrival = time.monotonic()
        self.source.on_packet(
            rtp(vp8_payload(self.sequence, key=key), self.sequence, 3000 * self.sequence, arrival=arrival)
        )


def subscriber(publisher: Publisher) -> tuple[VideoSlot, SlotSender, _Path]:
    path = _Path()
    slot = VideoSlot(0, "1", "VP8")
    sender = SlotSender(path, SSRC, 96, on_keyframe_request=slot.on_keyframe_request)
    slot.sender, slot.active = sender, True
    slot.assign(publisher.source)
    return slot, sender, path


def sent_sequences(path: _Path) -> list[int]:
    return [RtpPacket.parse(data).sequence_number for data in path.rtp]


def test_a_subscriber_asking_for_keyframes_twenty_times_a_second_gets_the_publisher_to_send_one_a_second() -> None:
    publisher = Publisher()
    _, sender, _ = subscriber(publisher)
    publisher.frame()  # the first keyframe, asked for when the slot was assigned
    started = time.monotonic()
    frames = 0
    while time.monotonic() - started < 3.0:
        publisher.frame()
        frames += 1
        if frames % 2 == 0:  # a PLI every 66 ms (a weak link's receiver sent 20 a second)
            sender.handle_rtcp_data(PLI)
        time.sleep(1 / 30)
    assert sender.estimate.keyframe_requests >= 40
    # one a second at most (and at least one: requests are merged, never lost), plus the first one
    assert 2 <= publisher.asked <= 1 + 3, publisher.asked
    assert publisher.keyframes_sent <= 1 + 3
    gate = sender.keyframe_requests
    assert gate.forwarded == publisher.asked - 1 and gate.answered_by_keyframe > 0


def test_a_loss_that_retransmission_repairs_asks_for_no_keyframe() -> None:
    publisher = Publisher()
    _, sender, path = subscriber(publisher)
    for _ in range(10):
        publisher.frame()
    asked = publisher.asked
    time.sleep(repair_time(None))  # the first keyframe has reached the subscriber
    lost = sent_sequences(path)[5]
    sender.handle_rtcp_data(nack(lost))
    sender.handle_rtcp_data(PLI)  # sent before the resend reached it
    assert sender.retransmitted == 1 and RtpPacket.parse(path.rtp[-1]).sequence_number == lost
    assert publisher.asked == asked and sender.keyframe_requests.pending  # held while the resend may repair
    time.sleep(repair_time(None) + 0.02)
    publisher.frame()
    # not asked again for that packet once the resend had time to arrive: it repaired the loss
    assert publisher.asked == asked and sender.keyframe_requests.answered_by_repair == 1
    assert not sender.keyframe_requests.pending

    # a packet no longer kept cannot be resent: the keyframe is asked for at once
    for _ in range(HISTORY_SIZE):
        publisher.frame()
    time.sleep(SUBSCRIBER_KEYFRAME_INTERVAL)
    sender.handle_rtcp_data(nack(lost))
    sender.handle_rtcp_data(PLI)
    assert publisher.asked == asked + 1


def test_a_resend_that_is_lost_too_lets_the_request_through_once_it_had_time() -> None:
    publisher = Publisher()
    _, sender, path = subscriber(publisher)
    for _ in range(10):
        publisher.frame()
    time.sleep(repair_time(None))
    asked = publisher.asked
    lost = sent_sequences(path)[4]
    sender.handle_rtcp_data(nack(lost))
    sender.handle_rtcp_data(PLI)
    publisher.frame()
    assert publisher.asked == asked
    # the subscriber asks again for the same packet after its resend should have arrived: that one was lost too
    time.sleep(repair_time(None) + 0.02)
    sender.handle_rtcp_data(nack(lost))
    publisher.frame()
    assert publisher.asked == asked + 1 and sender.retransmitted == 2


def test_a_source_merges_requests_within_its_interval_and_a_keyframe_answers_them() -> None:
    publisher = Publisher()
    source = publisher.source
    publisher.frame()
    source.request_keyframe()
    assert publisher.asked == 1
    source.request_keyframe()  # too soon: waits for the interval
    source.request_keyframe()
    publisher._key_due = False
    publisher.frame()
    assert publisher.asked == 1
    time.sleep(KEYFRAME_REQUEST_INTERVAL)
    publisher.frame()
    assert publisher.asked == 2  # the two merged into one, sent with the first packet after the interval

    time.sleep(KEYFRAME_REQUEST_INTERVAL / 2)
    source.request_keyframe()  # waits...
    publisher._key_due = True
    publisher.frame()  # ...and a keyframe comes meanwhile (another subscriber's): nothing more to ask
    time.sleep(KEYFRAME_REQUEST_INTERVAL)
    publisher.frame()
    assert publisher.asked == 2


def test_repair_time_follows_the_round_trip_within_bounds() -> None:
    assert repair_time(None) == repair_time(0.2)
    assert repair_time(0.0) == REPAIR_MIN
    assert repair_time(0.3) == 0.3 + 0.05
    assert repair_time(5.0) == 1.0
