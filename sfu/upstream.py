"""What the SFU owes a WebRTC publisher as the receiver of its video: receiver reports, REMB and NACKs.

aiortc's receiver did this when it received the video itself; packet-level forwarding takes the packets before it
(no jitter buffer, no depayloading), so this is the receiver's share of RTCP done on those packets: loss and jitter
statistics (RFC 3550), NACKs for the gaps (RFC 4585; the publisher's RTX answers come back through the same
forwarding, where they fill the subscribers' gaps too), and REMB from aiortc's own remote bitrate estimator (which
is what lets a browser raise its sending rate).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    pack_remb_fci,
)

from .rtprewriter import VIDEO_CLOCK_RATE, MediaPacket, find_extension, seq_newer

#: missing sequence numbers tracked per stream for NACKs
NACK_WINDOW = 128


class _StreamStatistics:
    """RFC 3550 appendix A.3 and A.8 for one received SSRC."""

    def __init__(self, sequence: int) -> None:
        self.base = sequence
        self.highest = sequence
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter_q4 = 0
        self.last_transit: int | None = None
        self.missing: set[int] = set()
        self.report: tuple[int, float] | None = None  # (middle 32 bits of the SR's NTP time, when it came)

    def add(self, packet: MediaPacket) -> bool:
        """Count the packet; True when it revealed a gap."""
        self.received += 1
        sequence = packet.sequence
        gap = False
        if seq_newer(sequence, self.highest):
            step = (sequence - self.highest) & 0xFFFF
            if step <= NACK_WINDOW:
                for missing in range(1, step):
                    self.missing.add((self.highest + missing) & 0xFFFF)
                    gap = True
            else:
                self.missing.clear()
            if sequence < self.highest:
                self.cycles += 1 << 16
            self.highest = sequence
            if len(self.missing) > NACK_WINDOW:
                floor = (self.highest - NACK_WINDOW) & 0xFFFF
                self.missing = {s for s in self.missing if seq_newer(s, floor)}
        else:
            self.missing.discard(sequence)
        arrival = int(packet.arrival * VIDEO_CLOCK_RATE)
        transit = arrival - packet.timestamp
        if self.last_transit is not None:
            delta = abs(transit - self.last_transit)
            if delta < VIDEO_CLOCK_RATE * 10:
                self.jitter_q4 += delta - ((self.jitter_q4 + 8) >> 4)
        self.last_transit = transit
        return gap

    def receiver_info(self, ssrc: int) -> RtcpReceiverInfo:
        extended = self.cycles + self.highest
        expected = extended - self.base + 1
        lost = max(0, expected - self.received)
        interval_expected = expected - self.expected_prior
        interval_lost = interval_expected - (self.received - self.received_prior)
        self.expected_prior, self.received_prior = expected, self.received
        fraction = (interval_lost << 8) // interval_expected if interval_expected > 0 and interval_lost > 0 else 0
        lsr = dlsr = 0
        if self.report is not None:
            lsr = self.report[0]
            dlsr = int((time.monotonic() - self.report[1]) * 65536)
        return RtcpReceiverInfo(
            ssrc=ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=min(lost, 0x7FFFFF),
            highest_sequence=extended & 0xFFFFFFFF,
            jitter=self.jitter_q4 >> 4,
            lsr=lsr,
            dlsr=dlsr,
        )


class UpstreamFeedback:
    """Receiver-side RTCP for one publisher's video (its primary SSRCs), sent through `send_rtcp`."""

    def __init__(self, send_rtcp: Callable[[bytes], bool], rtcp_ssrc: int, abs_send_time_id: int | None) -> None:
        self.send_rtcp = send_rtcp
        self.rtcp_ssrc = rtcp_ssrc
        self.abs_send_time_id = abs_send_time_id
        self.nacks_sent = 0
        self._streams: dict[int, _StreamStatistics] = {}
        self._estimator = RemoteBitrateEstimator()

    def on_packet(self, packet: MediaPacket) -> None:
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = _StreamStatistics(packet.sequence)
            if len(self._streams) > 8:  # senders come and go (a restarted publisher): keep the latest
                del self._streams[next(iter(self._streams))]
        if stream.add(packet) and stream.missing:
            self._send(
                bytes(
                    RtcpRtpfbPacket(
                        fmt=RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc, media_ssrc=packet.ssrc, lost=sorted(stream.missing)
                    )
                )
            )
            self.nacks_sent += 1
        if self.abs_send_time_id:
            value = find_extension(packet.data, self.abs_send_time_id)
            if value is not None and len(value) == 3:
                remb = self._estimator.add(
                    arrival_time_ms=int(packet.arrival * 1000),
                    abs_send_time=int.from_bytes(value, "big"),
                    payload_size=packet.payload_end - packet.payload_start,
                    ssrc=packet.ssrc,
                )
                if remb is not None:
                    fci = pack_remb_fci(*remb)
                    self._send(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self.rtcp_ssrc, media_ssrc=0, fci=fci)))

    def on_sender_report(self, ssrc: int, ntp_timestamp: int) -> None:
        stream = self._streams.get(ssrc)
        if stream is not None:
            stream.report = ((ntp_timestamp >> 16) & 0xFFFFFFFF, time.monotonic())

    def _send(self, data: bytes) -> None:
        self.send_rtcp(data)

    def receiver_report(self) -> bytes | None:
        if not self._streams:
            return None
        reports = [stream.receiver_info(ssrc) for ssrc, stream in self._streams.items()]
        return bytes(RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=reports[-31:]))

    async def run_reports(self) -> None:
        """Send a receiver report every 0.5-1.5 s, until cancelled."""
        while True:
            await asyncio.sleep(0.5 + random.random())
            report = self.receiver_report()
            if report is not None:
                self._send(report)
