"""Call quality: what each participant's media was like, from our own counters and the RTCP reports (RFC 3550).

The media paths only count: packets and payload bytes in `MediaCounters` fields, received sequence numbers and
arrival times in a `ReceptionStatistics` per received stream (RFC 3550 appendix A.3 and A.8: loss and jitter). A
sampler reads a participant's leg every `SAMPLE_SECONDS` (`LinkState`) into his `CallQuality`: bitrates over the
interval, loss of what he sends us (our count) and of what we send him (his receiver reports), jitter both ways,
and the round trip time, taken from his receiver reports' LSR/DLSR against the sender reports we sent
(`SenderReportLog`). The call's totals, averages and worst values are kept until he leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: how often a participant's figures are read into his `CallQuality`
SAMPLE_SECONDS = 2.0
KINDS = ("audio", "video")
_NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP's epoch) to 1970-01-01


def ntp_time(now: float) -> int:
    """`now` (seconds since 1970) as a 64-bit NTP timestamp."""
    seconds = int(now)
    return ((seconds + _NTP_UNIX_OFFSET) << 32) | int((now - seconds) * (1 << 32))


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp: what a report's LSR field echoes (units of 1/65536 s)."""
    return (ntp >> 16) & 0xFFFFFFFF


def round_trip_time(arrival_ntp: int, lsr: int, dlsr: int) -> float | None:
    """RFC 3550 section 6.4.1: a receiver report arriving at `arrival_ntp` (64-bit NTP) that echoes, in `lsr`, the
    sender report it last received and says, in `dlsr`, how long it held it (1/65536 s): the round trip is the time
    since that sender report less the receiver's delay. In seconds; None when the report echoes no sender report
    (LSR 0) or the figure is impossible (clearly negative: not one of ours, or a broken clock)."""
    if lsr == 0:
        return None
    delta = (ntp_middle(arrival_ntp) - lsr - dlsr) & 0xFFFFFFFF
    if delta >= 0x80000000:
        # negative: by the 1/65536 s rounding of DLSR on a fast link, or not a report of ours
        return 0.0 if 0x100000000 - delta <= 2 else None
    return delta / 65536


class SenderReportLog:
    """The sender reports we sent lately, so that a receiver report's LSR is checked to echo one of ours before
    the round trip is taken from it."""

    KEEP = 8

    def __init__(self) -> None:
        self._sent: list[int] = []  # LSR values (middle 32 bits of the NTP timestamps), oldest first

    def sent(self, ntp: int) -> None:
        """We sent a sender report with this 64-bit NTP timestamp (taken when it was sent)."""
        self._sent.append(ntp_middle(ntp))
        if len(self._sent) > self.KEEP:
            del self._sent[0]

    def round_trip_time(self, lsr: int, dlsr: int, arrival_ntp: int) -> float | None:
        """The round trip a receiver report arriving at `arrival_ntp` measures; None if it echoes none of ours."""
        if lsr not in self._sent:
            return None
        return round_trip_time(arrival_ntp, lsr, dlsr)


class ReceptionStatistics:
    """RFC 3550 appendix A.3 (packets expected and lost) and A.8 (interarrival jitter) for one received SSRC."""

    __slots__ = (
        "base",
        "clock_rate",
        "cycles",
        "expected_prior",
        "highest",
        "jitter_q4",
        "last_transit",
        "received",
        "received_prior",
        "report",
    )

    def __init__(self, sequence: int, clock_rate: int) -> None:
        """`sequence`: the first packet's (counted by `add` like the others)."""
        self.clock_rate = clock_rate
        self.base = sequence
        self.highest = sequence
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter_q4 = 0  # the jitter estimate, times 16 (A.8's integer form), in RTP timestamp units
        self.last_transit: int | None = None
        #: the sender's latest sender report: (LSR, time.monotonic() when it came), echoed in our reports
        self.report: tuple[int, float] | None = None

    def add(self, sequence: int, timestamp: int, arrival: float) -> int:
        """Count one packet (`arrival`: seconds on the monotonic clock). Returns how far it moved the highest
        sequence number on: 0 for an older or repeated packet, more than 1 after a gap."""
        self.received += 1
        step = (sequence - self.highest) & 0xFFFF
        if step >= 0x8000:
            step = 0
        elif step:
            if sequence < self.highest:
                self.cycles += 1 << 16
            self.highest = sequence
        transit = int(arrival * self.clock_rate) - timestamp
        last = self.last_transit
        if last is not None:
            delta = abs(transit - last)
            if delta < self.clock_rate * 10:  # else a timestamp jump (wrap, new talk spurt after long DTX)
                self.jitter_q4 += delta - ((self.jitter_q4 + 8) >> 4)
        self.last_transit = transit
        return step

    @property
    def expected(self) -> int:
        return self.cycles + self.highest - self.base + 1

    @property
    def lost(self) -> int:
        """Packets that never came (late ones fill the count back; duplicates never make it negative)."""
        return max(0, self.expected - self.received)

    @property
    def jitter(self) -> float:
        """The interarrival jitter, in seconds."""
        return (self.jitter_q4 >> 4) / self.clock_rate

    def sender_report(self, ntp: int, now: float) -> None:
        """The sender sent a sender report with this NTP timestamp; `now`: time.monotonic()."""
        self.report = (ntp_middle(ntp), now)

    def report_block(self, now: float) -> tuple[int, int, int, int, int, int]:
        """The fields of a reception report block, for the interval since the previous one: (fraction lost in
        1/256, cumulative lost, extended highest sequence number, jitter in timestamp units, LSR, DLSR)."""
        expected = self.expected
        interval_expected = expected - self.expected_prior
        interval_lost = interval_expected - (self.received - self.received_prior)
        self.expected_prior, self.received_prior = expected, self.received
        fraction = (interval_lost << 8) // interval_expected if interval_expected > 0 and interval_lost > 0 else 0
        lsr = dlsr = 0
        if self.report is not None:
            lsr = self.report[0]
            dlsr = int((now - self.report[1]) * 65536)
        extended = (self.cycles + self.highest) & 0xFFFFFFFF
        return min(fraction, 255), min(self.lost, 0x7FFFFF), extended, self.jitter_q4 >> 4, lsr, dlsr


class InboundStream:
    """What one sender sends us, across the restarts of its numbering (a phone that starts a new SSRC, a new
    codec): packets, payload bytes, loss and jitter."""

    __slots__ = ("clock_rate", "lost_before", "octets", "packets_before", "reception", "ssrc")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.reception: ReceptionStatistics | None = None
        self.octets = 0
        self.packets_before = 0
        self.lost_before = 0

    def add(self, ssrc: int, sequence: int, timestamp: int, arrival: float, size: int) -> int:
        """Count a packet of `size` payload bytes; returns `ReceptionStatistics.add`'s step (more than 1: a gap)."""
        reception = self.reception
        if reception is None or ssrc != self.ssrc:
            self.restart()
            self.ssrc = ssrc
            reception = self.reception = ReceptionStatistics(sequence, self.clock_rate)
        self.octets += size
        return reception.add(sequence, timestamp, arrival)

    def restart(self, clock_rate: int | None = None) -> None:
        """The next packet starts a new numbering (optionally at another clock rate)."""
        if self.reception is not None:
            self.packets_before += self.reception.received
            self.lost_before += self.reception.lost
        self.reception = None
        if clock_rate is not None:
            self.clock_rate = clock_rate

    @property
    def packets(self) -> int:
        return self.packets_before + (self.reception.received if self.reception is not None else 0)

    @property
    def lost(self) -> int:
        return self.lost_before + (self.reception.lost if self.reception is not None else 0)

    @property
    def jitter(self) -> float | None:
        """Seconds; None before anything came."""
        return self.reception.jitter if self.reception is not None else None


@dataclass(slots=True)
class MediaCounters:
    """Totals counted for one leg, or summed for the process. Bytes are RTP payload bytes (as RTCP counts them)."""

    audio_packets_in: int = 0
    audio_bytes_in: int = 0
    video_packets_in: int = 0
    video_bytes_in: int = 0
    audio_packets_out: int = 0
    audio_bytes_out: int = 0
    video_packets_out: int = 0
    video_bytes_out: int = 0
    #: packets that never reached us (gaps in the sender's numbering that stayed unfilled)
    audio_lost_in: int = 0
    video_lost_in: int = 0
    #: packets of ours the participant's receiver says it lost (its receiver reports)
    audio_lost_out: int = 0
    video_lost_out: int = 0
    #: NACKs from subscribers, and the packets sent again to answer them; NACKs we sent to publishers
    nacks_received: int = 0
    retransmissions: int = 0
    nacks_sent: int = 0
    #: keyframe requests (PLI, FIR, SIP INFO) from subscribers, and those sent on to publishers (rate-limited)
    keyframe_requests_received: int = 0
    keyframe_requests_sent: int = 0
    #: event-loop time spent taking in and forwarding video packets (synchronous code: the loop's CPU time)
    forwarding_seconds: float = 0.0
    #: event-loop time spent mixing audio (a room's, not a leg's)
    mixing_seconds: float = 0.0

    def add(self, other: MediaCounters) -> None:
        for name in _COUNTER_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def raise_to(self, other: MediaCounters) -> None:
        """Each figure becomes the larger of the two (counters exposed to Prometheus must never go down)."""
        for name in _COUNTER_NAMES:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))

    def get(self, kind: str, what: str, direction: str) -> int:
        value: int = getattr(self, f"{kind}_{what}_{direction}")
        return value


_COUNTER_NAMES = tuple(f.name for f in fields(MediaCounters))


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """What a participant's receiver last reported of one kind of media we send him."""

    fraction_lost: float  # of the packets expected in its last interval
    packets_lost: int  # since the stream began
    jitter: float  # seconds


def resolution_text(resolution: tuple[int, int] | None) -> str | None:
    return f"{resolution[0]}x{resolution[1]}" if resolution is not None else None


@dataclass(slots=True)
class LinkState:
    """One reading of a participant's leg: what the sampler turns into his call quality."""

    counters: MediaCounters
    #: the latest round trip measured on his path (seconds), None before any
    round_trip_time: float | None = None
    #: by kind: what his receiver reports of what we send him
    reports: dict[str, ReceiverReport] = field(default_factory=dict)
    #: by kind: the interarrival jitter of what he sends us, as we measure it (seconds)
    jitter_in: dict[str, float] = field(default_factory=dict)
    #: the resolution of the video he sends us, when known (VP8 keyframes say it)
    sending: tuple[int, int] | None = None
    #: the video he receives, per slot: (participant shown, resolution when known)
    receiving: list[tuple[str, tuple[int, int] | None]] = field(default_factory=list)


class _Direction:
    """One kind of media one way (audio in, video out...), over the call."""

    __slots__ = ("bitrate", "bitrate_max", "fraction_lost", "fraction_lost_max", "jitter", "jitter_max", "reported")

    def __init__(self) -> None:
        self.bitrate = 0.0
        self.bitrate_max = 0.0
        self.fraction_lost = 0.0
        self.fraction_lost_max = 0.0
        self.jitter: float | None = None
        self.jitter_max = 0.0
        self.reported = False

    def observe(self, bitrate: float, fraction_lost: float | None, jitter: float | None) -> None:
        self.bitrate = bitrate
        self.bitrate_max = max(self.bitrate_max, bitrate)
        if fraction_lost is not None:
            self.reported = True
            self.fraction_lost = fraction_lost
            self.fraction_lost_max = max(self.fraction_lost_max, fraction_lost)
        if jitter is not None:
            self.jitter = jitter
            self.jitter_max = max(self.jitter_max, jitter)


class CallQuality:
    """A participant's media quality over his call: sampled every `SAMPLE_SECONDS`, kept until he leaves."""

    def __init__(self, started: float) -> None:
        """`started`: time.monotonic() when he joined."""
        self.started = started
        self.sampled_at = started
        self.counters = MediaCounters()
        self.round_trip_time: float | None = None
        self._rtt_sum = 0.0
        self._rtt_samples = 0
        self.round_trip_time_max = 0.0
        self.sending: tuple[int, int] | None = None
        self.receiving: list[tuple[str, tuple[int, int] | None]] = []
        self._directions = {(kind, way): _Direction() for kind in KINDS for way in ("in", "out")}

    def sample(self, state: LinkState, now: float) -> None:
        """Take a reading of the leg taken at `now` (time.monotonic())."""
        interval = now - self.sampled_at
        if interval <= 0:
            return
        before, after = self.counters, state.counters
        for kind in KINDS:
            sent = after.get(kind, "bytes", "in") - before.get(kind, "bytes", "in")
            packets = after.get(kind, "packets", "in") - before.get(kind, "packets", "in")
            lost = max(0, after.get(kind, "lost", "in") - before.get(kind, "lost", "in"))
            fraction = lost / (lost + packets) if lost + packets > 0 else None
            self._directions[kind, "in"].observe(8 * max(0, sent) / interval, fraction, state.jitter_in.get(kind))
            out = after.get(kind, "bytes", "out") - before.get(kind, "bytes", "out")
            report = state.reports.get(kind)
            self._directions[kind, "out"].observe(
                8 * max(0, out) / interval,
                report.fraction_lost if report is not None else None,
                report.jitter if report is not None else None,
            )
        self.counters = after
        self.sampled_at = now
        self.round_trip_time = state.round_trip_time
        if state.round_trip_time is not None:
            self._rtt_sum += state.round_trip_time
            self._rtt_samples += 1
            self.round_trip_time_max = max(self.round_trip_time_max, state.round_trip_time)
        self.sending = state.sending
        self.receiving = list(state.receiving)

    @property
    def duration(self) -> float:
        return self.sampled_at - self.started

    @property
    def round_trip_time_avg(self) -> float | None:
        return self._rtt_sum / self._rtt_samples if self._rtt_samples else None

    def _direction_json(self, kind: str, way: str) -> dict[str, Any]:
        direction = self._directions[kind, way]
        counters = self.counters
        figures: dict[str, Any] = {
            "packets": counters.get(kind, "packets", way),
            "bytes": counters.get(kind, "bytes", way),
            "bitrate": round(direction.bitrate),
            "packets_lost": counters.get(kind, "lost", way),
            "fraction_lost": round(direction.fraction_lost, 4) if direction.reported else None,
            "jitter": _rounded(direction.jitter),
        }
        if kind == "video" and way == "in":
            figures["resolution"] = resolution_text(self.sending)
        if kind == "video" and way == "out":
            figures["layers"] = [
                {"participant_id": shown, "resolution": resolution_text(resolution)}
                for shown, resolution in self.receiving
            ]
        return figures

    def to_json(self) -> dict[str, Any]:
        """Now: the latest interval's bitrates, loss and jitter, the call's counts so far, the round trip."""
        return {
            "duration": round(self.duration, 1),
            "round_trip_time": _rounded(self.round_trip_time),
            "round_trip_time_avg": _rounded(self.round_trip_time_avg),
            "round_trip_time_max": _rounded(self.round_trip_time_max if self._rtt_samples else None),
            **{kind: {way: self._direction_json(kind, way) for way in ("in", "out")} for kind in KINDS},
        }

    def summary(self) -> dict[str, Any]:
        """The whole call: average bitrates, loss over the call, worst loss interval and jitter, round trips."""
        duration = self.duration
        result: dict[str, Any] = {
            "duration": round(duration, 1),
            "round_trip_time_avg": _rounded(self.round_trip_time_avg),
            "round_trip_time_max": _rounded(self.round_trip_time_max if self._rtt_samples else None),
        }
        for kind in KINDS:
            for way in ("in", "out"):
                direction = self._directions[kind, way]
                packets = self.counters.get(kind, "packets", way)
                lost = self.counters.get(kind, "lost", way)
                result[f"{kind}_{way}"] = {
                    "packets": packets,
                    "bitrate_avg": round(8 * self.counters.get(kind, "bytes", way) / duration) if duration > 0 else 0,
                    "bitrate_max": round(direction.bitrate_max),
                    "packets_lost": lost,
                    # lost out of what was sent (the receiver's count of ours, or ours of the sender's)
                    "loss": round(lost / (lost + packets), 4) if lost + packets > 0 else 0.0,
                    "fraction_lost_max": round(direction.fraction_lost_max, 4),
                    "jitter_max": round(direction.jitter_max, 4),
                }
        result["video_in"]["resolution"] = resolution_text(self.sending)
        result["video_out"]["resolutions"] = sorted(
            {text for _, size in self.receiving if (text := resolution_text(size))}
        )
        return result

    def describe(self) -> str:
        """The summary as one line of text, for the log."""
        summary = self.summary()

        def ms(value: float | None) -> str:
            return f"{value * 1000:.1f} ms" if value is not None else "unmeasured"

        parts = [
            f"{summary['duration']:.0f} s",
            f"rtt avg {ms(summary['round_trip_time_avg'])} max {ms(summary['round_trip_time_max'])}",
        ]
        for kind in KINDS:
            for way in ("in", "out"):
                figures = summary[f"{kind}_{way}"]
                if not figures["packets"]:
                    continue
                parts.append(
                    f"{kind} {way} {figures['bitrate_avg'] / 1000:.0f} kbit/s, {figures['packets_lost']} lost"
                    f" ({100 * figures['loss']:.2f} %), jitter max {ms(figures['jitter_max'])}"
                )
        return "; ".join(parts)


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
