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

Simulcast sources (sfu/forwarder.py, `VideoSource.layers`): each slot first gets its source's lowest layer, in
order of priority (a slot is paused only when even that does not fit), then, in the same order, the largest layer
that what is left allows: each layer's bitrate is what it was measured to carry. Down a layer at once when the
one shown no longer fits; up only within what is proven, with `RESUME_HEADROOM` (the new layer starts on a
keyframe), and no sooner than `RAISE_HOLD` after going down; while a slot could go up, the pacer probes for the
next layer as it does for a paused slot. A slot that cannot change layer (a phone's) keeps the one that suits it.
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
#: ... and up to this while no slot is paused (a probe for a layer up only)
LAYER_PROBE_WAIT_MAX = 6.0
#: each round of a probe sends this much more than the last (about 30 % a second at `INTERVAL`)
PROBE_STEP = 1.15
#: bytes each packet costs beyond its payload (RTP header and extensions, SRTP tag, UDP and IP)
PACKET_OVERHEAD = 60
#: packets a keyframe is counted as, for its overhead
KEYFRAME_PACKETS = 30
#: weight of a new measurement in a source's smoothed bitrate
SMOOTHING = 0.3
#: a slot goes up a layer no sooner than this after it went down one
RAISE_HOLD = 2.0
#: the share of a congested link's estimate the layers above the lowest may take
CONGESTED_SHARE = 0.7


@dataclass
class Demand:
    """One slot's claim: `key` names it, `bitrate` is what its source's lowest layer sends (bits a second), `burst`
    what that layer's keyframe needs to pass whole within the pacer's queue bound (a paused slot resumes on a
    keyframe); `upper`: (bitrate, burst) of each layer above, lowest first; `layer`: the one shown (0: the lowest;
    None: none chosen yet, it takes at once the largest that fits); `lowered_at`: when it last went down one."""

    key: Hashable
    bitrate: float
    paused: bool = False
    paused_at: float = 0.0
    burst: float = 0.0
    upper: Sequence[tuple[float, float]] = ()
    layer: int | None = 0
    lowered_at: float = -1e9

    def layer_bitrate(self, layer: int) -> float:
        return self.bitrate if layer == 0 else self.upper[layer - 1][0]

    def layer_need(self, layer: int) -> float:
        """What taking `layer` takes: its bitrate, or the rate its keyframe needs if more (it starts on one)."""
        return max(self.bitrate, self.burst) if layer == 0 else max(self.upper[layer - 1])

    def next_up(self, layer: int | None) -> int:
        """The layer a probe aims at for it: the one above `layer` (None: paused, the lowest), or the top one."""
        return 0 if layer is None else min(layer + 1, len(self.upper))


def allocate_layers(
    available: float, demands: Sequence[Demand], now: float, proven: float | None = None, congested: bool = False
) -> dict[Hashable, int | None]:
    """The layer each of the `demands` (in order of priority) gets, None for those to pause, given `available` bits
    a second for video, of which `proven` (None: all) are known to pass (they were sent lately): a paused slot
    resumes, and a slot goes up a layer, only within those. On a `congested` link (a cut moments ago, loss) the
    layers above the lowest share only `CONGESTED_SHARE` of it: an estimate just cut still lags the link."""
    chosen: dict[Hashable, int | None] = {}
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
            chosen[demand.key] = 0
        else:
            chosen[demand.key] = None
    if congested:
        left -= available * (1 - CONGESTED_SHARE)
    for demand in demands:
        if chosen[demand.key] is None or demand.paused or not demand.upper:
            continue  # a slot resumed starts on its lowest layer
        best = 0
        for index, (bitrate, burst) in enumerate(demand.upper, start=1):
            extra = bitrate - demand.bitrate
            if demand.layer is None or index <= demand.layer:
                fits = extra <= left  # keeping it, going down to it, or a first choice: within the estimate
            else:
                need = max(bitrate, burst) * RESUME_HEADROOM - demand.bitrate
                fits = need <= left and need <= proven_left and now - demand.lowered_at >= RAISE_HOLD
            if fits:
                best = index
        extra = demand.layer_bitrate(best) - demand.bitrate
        left -= extra
        proven_left -= extra
        chosen[demand.key] = best
    return chosen


def allocate(available: float, demands: Sequence[Demand], now: float, proven: float | None = None) -> set[Hashable]:
    """The keys of the `demands` to pause (see `allocate_layers`)."""
    return {key for key, layer in allocate_layers(available, demands, now, proven).items() if layer is None}


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
        """Each source's bitrate, of each of its layers (what each carries, whatever the publisher meant it to)."""
        seen = {}
        for source in sources:
            for layer in source.renditions:
                meter = self._sources.get(layer) or RateMeter()
                meter.sample(layer.octets + layer.packets * PACKET_OVERHEAD, now)
                seen[layer] = meter
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
        layers: dict[int, list[VideoSource]] = {}  # by slot id: the layers its demand counts, lowest first
        changed = False
        for slot in slots:
            if slot.active and slot.target is not None:
                options = self._layer_options(slot, now)
                # a layer not measured yet (just started) is not offered: it would look free
                options = layers[id(slot)] = [o for o in options if self.source_bitrate(o) > 0] or options
                rates = [(self.source_bitrate(layer), self.keyframe_burst(layer)) for layer in options]
                shown = slot.layer
                layer = options.index(shown) if shown in options and slot.layer_rank is not None else None
                if len(options) > slot.offered_layers:
                    # a layer more than at the last choice (the publisher's encoder added it as his estimate grew,
                    # or it had not been measured yet): chosen afresh, on the estimate, like a new slot's
                    layer = None
                slot.offered_layers = len(options)
                demands.append(
                    Demand(
                        slot,
                        rates[0][0],
                        slot.paused,
                        slot.paused_at,
                        rates[0][1],
                        upper=rates[1:],
                        layer=layer if slot.adaptive and len(options) > 1 else 0,
                        lowered_at=slot.lowered_at,
                    )
                )
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
        chosen = allocate_layers(bitrate - audio, demands, now, proven, estimate.congested)
        to_pause = {key for key, layer in chosen.items() if layer is None}
        # a running slot is paused once it has not fitted for `PAUSE_AFTER` (the pacer absorbs a passing dip)
        unfit = {id(d.key): meters.unfit.get(id(d.key), now) for d in demands if d.key in to_pause and not d.paused}
        meters.unfit = unfit
        to_pause -= {d.key for d in demands if id(d.key) in unfit and now - unfit[id(d.key)] < PAUSE_AFTER}
        for demand in demands:
            slot = cast("VideoSlot", demand.key)
            options = layers[id(slot)]
            if slot.adaptive and len(options) > 1:
                index = chosen[demand.key] or 0  # a slot about to be paused: the lowest
                if demand.layer is not None and index != demand.layer:
                    logger.debug(
                        "slot %s: layer %d -> %d (%.0f kbit/s), estimate %.0f, sent %.0f",
                        slot.mid,
                        demand.layer,
                        index,
                        demand.layer_bitrate(index) / 1e3,
                        bitrate / 1e3,
                        sent / 1e3,
                    )
                    if index > demand.layer:
                        meters.probe_wait = PROBE_WAIT  # the probe proved room: the next may come as soon
                slot.select_layer(options[index])
            elif not slot.adaptive and options[0] is not slot.layer:
                slot.select_layer(options[0])  # the layer that suits it changed (their sizes became known)
            if slot.set_paused(demand.key in to_pause):
                logger.debug(
                    "slot %s %s: needs %.0f kbit/s (%.0f to resume), estimate %.0f, sent %.0f, audio %.0f",
                    slot.mid,
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
        self._probe(pacer, meters, demands, chosen, audio, now)
        return changed

    @staticmethod
    def _layer_options(slot: VideoSlot, now: float) -> list[VideoSource]:
        """The layers of the slot's source it may be given, lowest first: those being sent (all of them when none
        is), or the one that suits it for a slot that cannot change layer."""
        source = slot.target
        assert source is not None
        if not slot.adaptive:
            return [source.suited_layer()]
        renditions = source.renditions
        sending = [layer for layer in renditions if layer.sending(now)]
        return sending or renditions

    @staticmethod
    def _probe(
        pacer: Pacer,
        meters: _Meters,
        demands: list[Demand],
        chosen: dict[Hashable, int | None],
        audio: float,
        now: float,
    ) -> None:
        """While a slot is paused or could go up a layer, once the link has been quiet (no cut, no slot resumed)
        for `probe_wait`: pad so that what is sent grows by `PROBE_STEP` each round, up to the estimate (which grows
        with what is sent) and to what the slots need a layer up; a probe that ends in a cut doubles that wait."""
        estimate = pacer.estimate
        if meters.probing and estimate.decreased_at > meters.probe_started:
            meters.probe_wait = min(PROBE_WAIT_MAX, meters.probe_wait * 2)
            meters.probing = False
        wanting = [d for d in demands if chosen[d.key] is None or (chosen[d.key] or 0) < len(d.upper)]
        # a probe for a layer up risks less than one for a paused slot (the slot goes on below): retried sooner
        wait = meters.probe_wait if any(d.paused for d in demands) else min(meters.probe_wait, LAYER_PROBE_WAIT_MAX)
        quiet = now - max(estimate.decreased_at, meters.resumed_at) >= wait and not estimate.congested
        if not wanting or not quiet:
            meters.probing = False
            pacer.probe(0)
            return
        if not meters.probing:
            meters.probing, meters.probe_started, meters.probe_rate = True, now, max(meters.sent.bitrate, audio)
            logger.debug("probing from %.0f kbit/s (waited %.0f s)", meters.probe_rate / 1e3, wait)
        # what the slots need a layer up, their keyframes' bursts included (else the probe stops short of it)
        needed = audio + sum(d.layer_need(d.next_up(chosen[d.key])) for d in demands) * RESUME_HEADROOM
        remb = estimate.remb
        ceiling = estimate.bitrate if remb is None else min(estimate.bitrate, remb)
        meters.probe_rate = min(needed, ceiling, max(meters.probe_rate, meters.sent.bitrate) * PROBE_STEP)
        pacer.probe(meters.probe_rate)

    def forget(self, pacer: Pacer) -> None:
        self._meters.pop(id(pacer), None)
