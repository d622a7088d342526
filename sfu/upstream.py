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

from .quality import ReceptionStatistics
from .rtprewriter import VIDEO_CLOCK_RATE, MediaPacket, find_extension, seq_newer

#: missing sequence numbers tracked per stream for NACKs
NACK_WINDOW = 128


class _StreamStatistics(ReceptionStatistics):
    """RFC 3550's reception statistics of one received SSRC, and the sequence numbers missing (for NACKs)."""

    __slots__ = ("missing",)

    def __init__(self, sequence: int) -> None:
        super().__init__(sequence, VIDEO_CLOCK_RATE)
        self.missing: set[int] = set()

    def add_packet(self, packet: MediaPacket) -> bool:
        """Count the packet; True when it revealed a gap."""
        previous = self.highest
        step = self.add(packet.sequence, packet.timestamp, packet.arrival)
        if step == 0:
            self.missing.discard(packet.sequence)
            return False
        if step > NACK_WINDOW:
            self.missing.clear()
            return False
        for missing in range(1, step):
            self.missing.add((previous + missing) & 0xFFFF)
        if len(self.missing) > NACK_WINDOW:
            floor = (self.highest - NACK_WINDOW) & 0xFFFF
            self.missing = {s for s in self.missing if seq_newer(s, floor)}
        return step > 1

    def receiver_info(self, ssrc: int) -> RtcpReceiverInfo:
        fraction, lost, highest, jitter, lsr, dlsr = self.report_block(time.monotonic())
        return RtcpReceiverInfo(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=highest,
            jitter=jitter,
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
        if stream.add_packet(packet) and stream.missing:
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

    @property
    def packets_lost(self) -> int:
        """Packets of the publisher's video that never came (its retransmissions fill the gaps they answer)."""
        return sum(stream.lost for stream in self._streams.values())

    @property
    def jitter(self) -> float | None:
        """The interarrival jitter of its current stream, in seconds."""
        current = next(reversed(self._streams.values()), None)
        return current.jitter if current is not None else None

    def on_sender_report(self, ssrc: int, ntp_timestamp: int) -> None:
        stream = self._streams.get(ssrc)
        if stream is not None:
            stream.sender_report(ntp_timestamp, time.monotonic())

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
