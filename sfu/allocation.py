"""Each subscriber's bandwidth, shared out among his video slots; a slot that does not fit is paused.

`allocate` is the rule (pure): what the estimate leaves after audio goes to the slots in order of priority (the
active speaker's first, then the others, most recent speaker first), each needing its source's measured bitrate
(and, to resume, room for its keyframe to pass the pacer whole within its queue bound);
a slot that does not fit is paused and the next ones are still tried (a quieter source may fit where a busier one
did not). A paused slot comes back only with `RESUME_HEADROOM` to spare, within what is proven to pass (what was
sent lately, give or take `PROVEN_HEADROOM`: an estimate not tried since the slot was paused is not trusted), and
no sooner than `PAUSE_HOLD` after it was paused, so that it does not flap (each resumption costs a keyframe); a
running slot is paused only once it has not fitted for `PAUSE_AFTER` (a dip of the estimate is the pacer's to
absorb: what it cannot send in time it drops; audio is never queued behind it).

`BandwidthAllocator` applies it to a room every `INTERVAL`: it measures each source's bitrate and each subscriber's
audio and what he is sent, updates his estimate (sfu/bandwidth.py), pauses and resumes his slots
(`VideoSlot.set_paused`: a resumed slot starts again from a keyframe, asked for through the subscriber's
keyframe-request gate) and, while one of them is paused on a link that has been quiet for a while, has his pacer
pad up to the estimate (sfu/pacer.py, `probe`): a rate is known to pass only once it was sent, so that is how the
estimate climbs back when the link clears. A probe that ends in a cut doubles the wait before the next one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from .pacer import MAX_QUEUE_DELAY

if TYPE_CHECKING:
    from .forwarder import VideoSlot, VideoSource
    from .pacer import Pacer

logger = logging.getLogger(__name__)

INTERVAL = 0.5
RESUME_HEADROOM = 1.15
#: what a link is known to carry: the least sent over the last `PROVEN_AFTER` (the probe's padding included) with
#: no cut meanwhile, and this much more. Loss is read over windows of a second and reported a second later: a rate
#: sent for less time has not yet been heard of (resuming on it, the slot's keyframe met the probe's loss)
PROVEN_HEADROOM = 1.1
PROVEN_AFTER = 2.5
PAUSE_HOLD = 2.0
#: a running slot is paused once it has not fitted for this long
PAUSE_AFTER = 2.0
#: a probe starts once the link has had no cut for this long; a probe that ends in a cut doubles it, up to the max
PROBE_WAIT = 4.0
PROBE_WAIT_MAX = 16.0
#: each round of a probe sends this much more than the last (about 30 % a second at `INTERVAL`)
PROBE_STEP = 1.15
#: bytes each packet costs beyond its payload (RTP header and extensions, SRTP tag, UDP and IP)
PACKET_OVERHEAD = 60
#: packets a keyframe is counted as, for its overhead
KEYFRAME_PACKETS = 30
#: weight of a new measurement in a source's smoothed bitrate
SMOOTHING = 0.3


@dataclass
class Demand:
    """One slot's claim: `key` names it, `bitrate` is what its source sends (bits a second), `burst` what its
    keyframe needs to pass whole within the pacer's queue bound (a paused slot resumes on a keyframe)."""

    key: Hashable
    bitrate: float
    paused: bool = False
    paused_at: float = 0.0
    burst: float = 0.0


def allocate(available: float, demands: Sequence[Demand], now: float, proven: float | None = None) -> set[Hashable]:
    """The keys of the `demands` (in order of priority) to pause, given `available` bits a second for video, of
    which `proven` (None: all) are known to pass (they were sent lately): a paused slot resumes only within those."""
    paused: set[Hashable] = set()
    left = available
    proven_left = available if proven is None else min(available, proven)
    for demand in demands:
        if demand.paused:
            need = max(demand.bitrate, demand.burst) * RESUME_HEADROOM
            fits = need <= left and need <= proven_left and now - demand.paused_at >= PAUSE_HOLD
        else:
            fits = demand.bitrate <= left
        if fits:
            left -= demand.bitrate
            proven_left -= demand.bitrate
        else:
            paused.add(demand.key)
    return paused


class RateMeter:
    """Bits a second of a growing byte count, smoothed, measured at each `sample`."""

    def __init__(self) -> None:
        self.bitrate = 0.0
        self._bytes: int | None = None
        self._at = 0.0

    def sample(self, total_bytes: int, now: float) -> float:
        if self._bytes is not None and now > self._at:
            measured = (total_bytes - self._bytes) * 8 / (now - self._at)
            self.bitrate = measured if self.bitrate == 0 else self.bitrate + SMOOTHING * (measured - self.bitrate)
        self._bytes, self._at = total_bytes, now
        return self.bitrate


class _Meters:
    """One subscriber's figures between two rounds: what he is sent, his audio, his probing."""

    def __init__(self) -> None:
        self.sent = RateMeter()
        #: what was sent, as measured at each round (`proven`)
        self.sent_history: deque[tuple[float, float]] = deque()
        self.audio = RateMeter()
        self.probing = False
        self.probe_started = 0.0
        self.probe_rate = 0.0
        self.resumed_at = -1e9
        #: running slots (by id) that do not fit, since when
        self.unfit: dict[int, float] = {}
        self.probe_wait = PROBE_WAIT

    def proven(self, now: float, decreased_at: float) -> float:
        """What the link is known to carry (bits a second): the least sent over the last `PROVEN_AFTER`, none
        within `PROVEN_AFTER` of a cut."""
        history = self.sent_history
        history.append((now, self.sent.bitrate))
        while history and history[0][0] < now - PROVEN_AFTER:
            history.popleft()
        if now - decreased_at < PROVEN_AFTER:
            return 0.0
        return min(bitrate for _, bitrate in history)


class BandwidthAllocator:
    def __init__(self) -> None:
        self._sources: dict[VideoSource, RateMeter] = {}
        self._meters: dict[int, _Meters] = {}

    def source_bitrate(self, source: VideoSource) -> float:
        """What showing `source` takes: its measured bitrate."""
        return self._sources[source].bitrate if source in self._sources else 0.0

    @staticmethod
    def keyframe_burst(source: VideoSource) -> float:
        """The rate at which its latest keyframe leaves the pacer within its queue bound (else it arrives broken)."""
        return (source.keyframe_octets + KEYFRAME_PACKETS * PACKET_OVERHEAD) * 8 / MAX_QUEUE_DELAY

    def measure(self, sources: Iterable[VideoSource], now: float) -> None:
        seen = {}
        for source in sources:
            meter = self._sources.get(source) or RateMeter()
            meter.sample(source.octets + source.packets * PACKET_OVERHEAD, now)
            seen[source] = meter
        self._sources = seen

    def apply(self, pacer: Pacer, slots: Sequence[VideoSlot], now: float | None = None) -> bool:
        """Share out the bandwidth of the subscriber whose `pacer` it is among his `slots` (in order of priority):
        True when a slot was paused or resumed. His audio is what his pacer was charged with."""
        now = time.monotonic() if now is None else now
        meters = self._meters.get(id(pacer))
        if meters is None:
            meters = self._meters[id(pacer)] = _Meters()
        estimate = pacer.estimate
        sent = meters.sent.sample(pacer.bytes_sent, now)
        bitrate = estimate.update(now, sent)
        audio = meters.audio.sample(pacer.bytes_charged, now)
        demands = []
        changed = False
        for slot in slots:
            if slot.active and slot.target is not None:
                target = slot.target
                burst = self.keyframe_burst(target)
                demands.append(Demand(slot, self.source_bitrate(target), slot.paused, slot.paused_at, burst))
            elif slot.set_paused(False):  # nothing to show: nothing paused
                changed = True
        # what can pad probes for more, and resumes within what was sent; what cannot (a plain-RTP leg, no RTX)
        # resumes on the estimate, its media the probe
        proven = None
        if estimate.throughput_bound:
            proven = meters.proven(now, estimate.decreased_at) * PROVEN_HEADROOM
            # the receiver's own estimate bounds what a probe proved: padding lost in a full link was sent all
            # the same (libwebrtc's sender never goes above the REMB either)
            remb = estimate.remb
            proven = (proven if remb is None else min(proven, remb)) - audio
        to_pause = allocate(bitrate - audio, demands, now, proven)
        # a running slot is paused once it has not fitted for `PAUSE_AFTER` (the pacer absorbs a passing dip)
        unfit = {id(d.key): meters.unfit.get(id(d.key), now) for d in demands if d.key in to_pause and not d.paused}
        meters.unfit = unfit
        to_pause -= {d.key for d in demands if id(d.key) in unfit and now - unfit[id(d.key)] < PAUSE_AFTER}
        for demand in demands:
            if cast("VideoSlot", demand.key).set_paused(demand.key in to_pause):
                logger.debug(
                    "slot %s %s: needs %.0f kbit/s (%.0f to resume), estimate %.0f, sent %.0f, audio %.0f",
                    cast("VideoSlot", demand.key).mid,
                    "paused" if demand.key in to_pause else "resumed",
                    demand.bitrate / 1e3,
                    max(demand.bitrate, demand.burst) * RESUME_HEADROOM / 1e3,
                    bitrate / 1e3,
                    sent / 1e3,
                    audio / 1e3,
                )
                changed = True
                if demand.key not in to_pause:
                    # room came back: the resumed slot settles before probing for more, and probes come freely again
                    meters.probe_wait, meters.resumed_at = PROBE_WAIT, now
        self._probe(pacer, meters, to_pause, demands, audio, now)
        return changed

    @staticmethod
    def _probe(
        pacer: Pacer, meters: _Meters, to_pause: set[Hashable], demands: list[Demand], audio: float, now: float
    ) -> None:
        """While a slot is paused, once the link has been quiet (no cut, no slot resumed) for `probe_wait`: pad
        so that what is sent grows by `PROBE_STEP` each round, up to the estimate (which grows with what is sent)
        and to what the paused slots need; a probe that ends in a cut doubles that wait."""
        estimate = pacer.estimate
        if meters.probing and estimate.decreased_at > meters.probe_started:
            meters.probe_wait = min(PROBE_WAIT_MAX, meters.probe_wait * 2)
            meters.probing = False
        quiet = now - max(estimate.decreased_at, meters.resumed_at) >= meters.probe_wait and not estimate.congested
        if not to_pause or not quiet:
            meters.probing = False
            pacer.probe(0)
            return
        if not meters.probing:
            meters.probing, meters.probe_started, meters.probe_rate = True, now, max(meters.sent.bitrate, audio)
        needed = audio + sum(d.bitrate for d in demands if d.key in to_pause or not d.paused) * RESUME_HEADROOM
        remb = estimate.remb
        ceiling = estimate.bitrate if remb is None else min(estimate.bitrate, remb)
        meters.probe_rate = min(needed, ceiling, max(meters.probe_rate, meters.sent.bitrate) * PROBE_STEP)
        pacer.probe(meters.probe_rate)

    def forget(self, pacer: Pacer) -> None:
        self._meters.pop(id(pacer), None)
