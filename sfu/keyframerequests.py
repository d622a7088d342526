"""One subscriber's keyframe requests (PLI, FIR) for one of its video streams, on their way to the publisher.

A keyframe costs every subscriber of the publisher (tens of packets, a worse picture for a moment), so one
subscriber on a bad link must not set the pace. Its requests go through this gate, which lets one through:
- only when retransmission cannot repair what it lost: a request that comes while retransmissions answering its
  NACKs may still arrive (one round trip, `repair_time`) is held; at the end of that time it goes on only if the
  repair failed (a NACK asked for a packet no longer kept, or asked again for one already resent after the resend
  had time to arrive), otherwise it is dropped (a receiver that still needs a keyframe asks again, as browsers do
  every few hundred milliseconds);
- at most once per `SUBSCRIBER_KEYFRAME_INTERVAL`: requests meanwhile are merged into one sent when it ends;
- not while a keyframe is already on its way to the subscriber (sent less than a round trip ago), and any request
  waiting is answered by a keyframe that reaches it.
The gate needs no timer: `poll` runs with each packet sent to the subscriber.
"""

from __future__ import annotations

from collections.abc import Callable

#: a subscriber's keyframe requests reach the publisher at most this often
SUBSCRIBER_KEYFRAME_INTERVAL = 1.0
#: the round-trip time assumed until receiver reports give one
DEFAULT_ROUND_TRIP = 0.2
#: retransmissions are given one round trip plus this margin to repair a loss, within these bounds
REPAIR_MARGIN = 0.05
REPAIR_MIN = 0.1
REPAIR_MAX = 1.0


def repair_time(round_trip: float | None) -> float:
    """How long a retransmission may take to reach the subscriber and its next word to come back."""
    rtt = DEFAULT_ROUND_TRIP if round_trip is None else round_trip
    return min(REPAIR_MAX, max(REPAIR_MIN, rtt + REPAIR_MARGIN))


class KeyframeRequestGate:
    """`request` for each PLI/FIR received, `retransmitted` / `repair_failed` as its NACKs are answered,
    `keyframe_sent` and `poll` as packets go out; `forward` is called for the requests that go on."""

    def __init__(self, forward: Callable[[], None], interval: float = SUBSCRIBER_KEYFRAME_INTERVAL) -> None:
        self.forward = forward
        self.interval = interval
        #: what became of the requests: passed on, and dropped because retransmission or a keyframe answered them
        self.forwarded = 0
        self.answered_by_repair = 0
        self.answered_by_keyframe = 0
        #: something is held or waiting: `poll` has work
        self.pending = False
        self._last_forward = -1e9
        self._keyframe_at = -1e9
        self._keyframe_transit = REPAIR_MIN
        self._repair_until = -1e9
        self._repair_failed = False
        self._held = False
        self._waiting = False

    def retransmitted(self, now: float, round_trip: float | None) -> None:
        """Packets the subscriber asked for were sent again."""
        self._repair_until = max(self._repair_until, now + repair_time(round_trip))

    def repair_failed(self) -> None:
        """A packet the subscriber asked for is no longer kept, or a resend of it did not arrive."""
        self._repair_failed = True

    def keyframe_sent(self, now: float, round_trip: float | None) -> None:
        """A keyframe went out to the subscriber: it answers whatever was asked before."""
        self._keyframe_at = now
        self._keyframe_transit = repair_time(round_trip)
        self._repair_failed = self._held = self._waiting = self.pending = False

    def request(self, now: float) -> None:
        """The subscriber sent a PLI or FIR."""
        if now - self._keyframe_at < self._keyframe_transit:
            self.answered_by_keyframe += 1  # sent before the keyframe on its way reached it
        elif not self._repair_failed and now < self._repair_until:
            if self._held:
                self.answered_by_repair += 1  # one held request stands for all until the repair is judged
            self._held = self.pending = True
        else:
            self._want(now)

    def poll(self, now: float) -> None:
        """Release what has come due (cheap: call with each packet sent while `pending`)."""
        if self._held and (self._repair_failed or now >= self._repair_until):
            self._held = False
            if self._repair_failed:
                self._want(now)
            else:
                self.answered_by_repair += 1
        if self._waiting and now - self._last_forward >= self.interval:
            self._send(now)
        self.pending = self._held or self._waiting

    def _want(self, now: float) -> None:
        if now - self._last_forward >= self.interval:
            self._send(now)
        else:
            self._waiting = self.pending = True

    def _send(self, now: float) -> None:
        self._waiting = self._repair_failed = False
        self.pending = self._held
        self._last_forward = now
        self.forwarded += 1
        self.forward()
