"""One subscriber's bandwidth estimate: what his link takes, from what his receiver tells us.

Inputs, from his slots' RTCP (sfu/rtpsender.py): REMB when it was negotiated (the receiver's own delay-based
estimate), the receiver reports' fraction lost and round trip; and, from the allocator, what was actually sent
lately (`sent`). The rule, a loss- and delay-based controller much like GCC's sender side:
- down at once: a falling REMB (the receiver's detector saw a queue building) brings it down to the REMB (the sum
  of the receivers', when each sends its own, as aiortc does); a report with
  more than `LOSS_HIGH` lost cuts it to what was being sent less half the loss, and (for a receiver without REMB)
  a round trip `QUEUE_DELAY_HIGH` above the least seen (a queue on the way) by `DELAY_BACKOFF`; at most once per
  round trip (several slots report the same loss);
- hold while the loss is between `LOSS_LOW` and `LOSS_HIGH`, and for `HOLD_AFTER_DECREASE` after a cut;
- up gradually otherwise: `GROWTH_PER_SECOND` compounded (`NEAR_MAX_GROWTH` around the rate that flowed at the
  last cut, where the link gave way before), never above what was sent lately times `THROUGHPUT_HEADROOM` or plus
  `UNPROVEN_HEADROOM`, whichever is more (a rate never tried is not known to pass: the same bound REMB has, which
  never exceeds 1.5 times what the receiver gets, so a REMB above the estimate adds nothing).
A rate can only be tried by sending it: while a slot is paused the allocator has the pacer pad a little above
what is sent, step by step (sfu/allocation.py, sfu/pacer.py `probe`), so the estimate climbs again once the link
clears, in seconds; a REMB that falls, or loss, ends the probe. Without REMB (a phone, or a browser that did not
negotiate it) only loss and the reports' round trip tell of congestion: slower to see, so a probe overshoots more.
transport-cc feedback would let us measure delay on our side; it is not negotiated yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: a new subscriber starts here: high enough that a good link shows every slot at once (a report of loss or a
#: REMB brings it down within a second or two on a weak one)
INITIAL_BITRATE = 10_000_000
MIN_BITRATE = 30_000
MAX_BITRATE = 20_000_000
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
#: a round trip this much above the least seen means a queue is building on the way
QUEUE_DELAY_HIGH = 0.25
DELAY_BACKOFF = 0.85
GROWTH_PER_SECOND = 1.25
NEAR_MAX_GROWTH = 1.08
#: "near" the last cut: within this factor above it
NEAR_MAX_SPAN = 1.25
THROUGHPUT_HEADROOM = 1.5
#: growth may also reach this far above what was sent (a link carrying little says little of what it could carry:
#: without it a dip of the estimate on a quiet link would take seconds of probing to undo)
UNPROVEN_HEADROOM = 300_000
HOLD_AFTER_DECREASE = 1.0
#: cuts are at least this far apart (or a round trip, if longer): each slot reports the same loss, about once a second
DECREASE_INTERVAL = 1.0
#: a REMB this much below the previous one from the same receiver means congestion
REMB_FALL = 0.9
#: a report of loss counts for this long unless a worse one comes (loss is read over windows of a second or more,
#: sfu/rtpsender.py `LOSS_WINDOW`; a stream that stops, a paused slot, reports none, and its last loss expires)
LOSS_MEMORY = 2.0
#: a REMB not repeated for this long no longer counts (a receiver that gets nothing sends none)
REMB_LIFETIME = 5.0


class BandwidthEstimate:
    def __init__(self, initial: float = INITIAL_BITRATE) -> None:
        #: bits a second the subscriber's link is thought to take now
        self.bitrate = float(initial)
        #: bits a second sent lately (everything: audio, video, retransmissions, padding), as the allocator measures
        self.sent = 0.0
        self.fraction_lost = 0.0
        self.round_trip_time: float | None = None
        self.least_round_trip: float | None = None
        self.decreases = 0
        #: growth is held to what was sent lately (`THROUGHPUT_HEADROOM`): for a subscriber that can be probed with
        #: padding; one that cannot (no RTX: a plain-RTP leg) grows on the absence of loss alone
        self.throughput_bound = True
        #: when the estimate was last cut, and the rate that was flowing then (where the link gave way)
        self.decreased_at = -1e9
        self.cut_from: float | None = None
        #: the latest REMB per set of streams it covers, and when it came (Chrome sends one for all the streams of
        #: the connection, aiortc one per receiver: the link's is their sum)
        self._rembs: dict[frozenset[int], tuple[float, float]] = {}
        self._updated = time.monotonic()
        self._lost_at = -1e9

    @property
    def remb(self) -> float | None:
        """The link's REMB now: the sum of the live ones (None: none)."""
        return self._live_remb(time.monotonic())

    def _live_remb(self, now: float) -> float | None:
        live = [bitrate for bitrate, at in self._rembs.values() if now - at < REMB_LIFETIME]
        return sum(live) if live else None

    def on_remb(self, bitrate: float, ssrcs: Iterable[int], now: float | None = None) -> None:
        """A REMB about the streams `ssrcs`. A receiver's REMB falls only when it sees a queue building (its own
        delay-based detector, which then says 0.85 of what it receives): the estimate comes down to the link's REMB
        at once. It rises no faster than 1.5 times what the receiver gets, so it says nothing more than our own
        throughput bound."""
        now = time.monotonic() if now is None else now
        self.update(now)
        key = frozenset(ssrcs)
        previous = self._rembs.get(key)
        self._rembs[key] = (float(bitrate), now)
        remb = self._live_remb(now)
        if previous is not None and bitrate < previous[0] * REMB_FALL and remb is not None:
            self._decrease(max(MIN_BITRATE, remb), now, f"REMB {previous[0]:.0f} -> {bitrate:.0f}")

    def on_report(self, fraction_lost: float | None, round_trip_time: float | None, now: float | None = None) -> None:
        """A reception report block about one of the subscriber's streams: the share of packets the link lost over
        the last window (from 0 to 1; None: the window is not over, only the round trip is new)."""
        now = time.monotonic() if now is None else now
        self.update(now)
        if now - self._lost_at > LOSS_MEMORY:
            self.fraction_lost = 0.0
        # several streams report at once: the worst of the last windows counts
        if fraction_lost is not None and (fraction_lost >= self.fraction_lost or now - self._lost_at > LOSS_MEMORY):
            self.fraction_lost, self._lost_at = fraction_lost, now
        if round_trip_time is not None:
            self.round_trip_time = round_trip_time
            if self.least_round_trip is None or round_trip_time < self.least_round_trip:
                self.least_round_trip = round_trip_time
        base = min(self.bitrate, self.sent) if self.sent > 0 else self.bitrate
        if fraction_lost is not None and fraction_lost > LOSS_HIGH:
            self._decrease(max(MIN_BITRATE, base * (1 - fraction_lost / 2)), now, f"{fraction_lost:.0%} lost")
        elif self.queue_building:
            self._decrease(
                max(MIN_BITRATE, self.bitrate * DELAY_BACKOFF), now, f"round trip {self.round_trip_time:.3f} s"
            )

    @property
    def queue_delay(self) -> float:
        """How much longer the latest round trip was than the least one seen."""
        if self.round_trip_time is None or self.least_round_trip is None:
            return 0.0
        return self.round_trip_time - self.least_round_trip

    @property
    def queue_building(self) -> bool:
        """The reports' round trip says a queue is building on the way: the delay signal of a receiver without
        REMB (one with REMB says so sooner and better, by the REMB falling; the round trip, read from reports a
        second apart by a process that may be busy, is noisier)."""
        return self.queue_delay > QUEUE_DELAY_HIGH and not self._rembs

    @property
    def congested(self) -> bool:
        """The latest reports say the link is full (loss, or a queue), or it was cut moments ago."""
        return (
            (self.fraction_lost >= LOSS_LOW and time.monotonic() - self._lost_at <= LOSS_MEMORY)
            or self.queue_building
            or time.monotonic() - self.decreased_at < HOLD_AFTER_DECREASE
        )

    def _decrease(self, bitrate: float, now: float, why: str) -> None:
        interval = max(DECREASE_INTERVAL, self.round_trip_time or 0.0)
        if bitrate >= self.bitrate or now - self.decreased_at < interval:
            return
        logger.debug(
            "bandwidth %.0f -> %.0f kbit/s (%s; %.0f sent)", self.bitrate / 1e3, bitrate / 1e3, why, self.sent / 1e3
        )
        self.cut_from = min(self.bitrate, self.sent) if self.sent > 0 else self.bitrate
        self.bitrate = bitrate
        self.decreases += 1
        self.decreased_at = now

    def update(self, now: float | None = None, sent: float | None = None) -> float:
        """The estimate now, the growth since the last update applied (`sent`: bits a second sent lately)."""
        now = time.monotonic() if now is None else now
        if sent is not None:
            self.sent = sent
        elapsed, self._updated = min(now - self._updated, 1.0), now
        if now - self._lost_at > LOSS_MEMORY:
            self.fraction_lost = 0.0
        if elapsed <= 0 or self.fraction_lost >= LOSS_LOW or self.queue_building:
            return self.bitrate
        if now - self.decreased_at < HOLD_AFTER_DECREASE:
            return self.bitrate
        ceiling = (
            min(MAX_BITRATE, max(MIN_BITRATE, self.sent * THROUGHPUT_HEADROOM))
            if self.throughput_bound
            else MAX_BITRATE
        )
        cut = self.cut_from
        near_max = cut is not None and cut / NEAR_MAX_SPAN <= self.bitrate < cut * NEAR_MAX_SPAN
        growth = NEAR_MAX_GROWTH if near_max else GROWTH_PER_SECOND
        if self.bitrate < ceiling:
            self.bitrate = min(ceiling, self.bitrate * growth**elapsed)
        return self.bitrate
