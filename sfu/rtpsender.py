"""A slot's own RTP sender: one header rewrite, one send on the leg's path, and what a receiver needs from a sender.

Two paths, one sender: a WebRTC leg protects each packet with the SRTP keys its DTLS transport derived and sends it
on the ICE transport's nominated pair (`aiortc_adapter.IceSrtpPath`); a plain-RTP leg sends it as is
(`PlainRtpPath`). The sender keeps a history of what it sent to answer NACKs (RTX where negotiated), sends RTCP
sender reports (NTP/RTP mapping on this machine's clock, from the source's own reports when it sent some, so the
browser can line the picture up with the mixer's audio), hands PLI/FIR to the slot (which passes them on to the
source, rate-limited), and keeps what the subscriber says of its link (REMB, receiver reports, transport-cc
feedback) in a `ReceiverEstimate`.

Written here rather than using aiortc's RTCRtpSender: that one packs frames and runs a task per sender; this path
forwards packets as they come, with no queue in between.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from .rtprewriter import VIDEO_CLOCK_RATE, MediaPacket, SlotRewriter, abs_send_time, rtx_packet
from .sdes import SrtpContext

logger = logging.getLogger(__name__)

#: packets kept per slot to answer NACKs (about 3 s of a 1.5 Mbit/s stream)
HISTORY_SIZE = 512
#: RTCP transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions)
RTCP_RTPFB_TWCC = 15
_NTP_UNIX_OFFSET = 2208988800
_SR = struct.Struct("!BBHIIIIII")
_SDES_HEADER = struct.Struct("!BBHI")


def write_buffer_size(transport: asyncio.DatagramTransport) -> int:
    """Bytes asyncio holds for a datagram socket the kernel would not take (selector transports have the method)."""
    return int(cast(Any, transport).get_write_buffer_size())


class PacketPath(Protocol):
    """Where a leg's packets leave: True when sent, False when dropped (not connected, or the socket is full)."""

    def send_rtp(self, data: bytes) -> bool: ...

    def send_rtcp(self, data: bytes) -> bool: ...

    def connected(self) -> bool:
        """Whether the path has somewhere to send to now."""
        ...


class PlainRtpPath:
    """RTP and RTCP on a leg's UDP sockets (the RTCP port, or the RTP one with rtcp-mux): plain, or protected with
    the SDES keys (`srtp`) of a phone that offered RTP/SAVP."""

    #: bytes waiting in a socket's user-space buffer past which video is dropped (a stalled network)
    BUFFER_LIMIT = 256 * 1024

    def __init__(self) -> None:
        self.rtp: asyncio.DatagramTransport | None = None
        self.rtcp: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.srtp: SrtpContext | None = None

    def connected(self) -> bool:
        return self.rtp is not None and self.remote is not None and not self.rtp.is_closing()

    def send_rtp(self, data: bytes) -> bool:
        transport, remote = self.rtp, self.remote
        if transport is None or remote is None or transport.is_closing():
            return False
        if write_buffer_size(transport) > self.BUFFER_LIMIT:
            return False
        transport.sendto(data if self.srtp is None else self.srtp.protect(data), remote)
        return True

    def send_rtcp(self, data: bytes) -> bool:
        transport, remote = self.rtcp, self.remote_rtcp
        if transport is None or remote is None or transport.is_closing():
            return False
        transport.sendto(data if self.srtp is None else self.srtp.protect_rtcp(data), remote)
        return True


@dataclass
class ReceiverEstimate:
    """What one subscriber's receiver tells of its link (read here, used by bandwidth adaptation later)."""

    remb_bitrate: int | None = None
    remb_at: float = 0.0
    fraction_lost: float = 0.0
    packets_lost: int = 0
    jitter: int = 0
    round_trip_time: float | None = None
    transport_feedbacks: int = 0
    nacks: int = 0
    keyframe_requests: int = 0


def ntp_time(now: float) -> int:
    seconds = int(now)
    return ((seconds + _NTP_UNIX_OFFSET) << 32) | int((now - seconds) * (1 << 32))


class SlotSender:
    """Sends one slot's packets on a path, and answers its receiver's RTCP."""

    def __init__(
        self,
        path: PacketPath,
        ssrc: int,
        payload_type: int,
        *,
        rtx_ssrc: int | None = None,
        rtx_payload_type: int | None = None,
        cname: str | None = None,
        mid: str | None = None,
        mid_id: int | None = None,
        abs_send_time_id: int | None = None,
        on_keyframe_request: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.cname = cname
        self.rewriter = SlotRewriter(
            ssrc,
            payload_type,
            mid=mid,
            mid_id=mid_id,
            abs_send_time_id=abs_send_time_id,
            initial_sequence=random.getrandbits(15),
            initial_timestamp=random.getrandbits(32),
        )
        self.estimate = ReceiverEstimate()
        self.on_keyframe_request = on_keyframe_request
        self.packets_sent = 0
        self.octets_sent = 0
        self.packets_dropped = 0
        self.retransmitted = 0
        self._history: list[tuple[int, bytes, int] | None] = [None] * HISTORY_SIZE
        self._rtx_sequence = random.getrandbits(15)
        self._source: object | None = None
        self._last_report: tuple[int, float] | None = None  # (middle 32 bits of its NTP time, when) of our last SR

    # RTP

    def forward(self, source: object, packet: MediaPacket) -> bool:
        """False when the packet could not leave and the receiver has had nothing yet (the path is not connected):
        what follows would be of no use to it until the next keyframe."""
        rewritten = self.rewriter.rewrite(source, packet, abs_send_time())
        if rewritten is None:
            return True
        data, header_length = rewritten
        self._source = source
        sequence = (data[2] << 8) | data[3]
        self._history[sequence % HISTORY_SIZE] = (sequence, data, header_length)
        if self.path.send_rtp(data):
            self.packets_sent += 1
            self.octets_sent += len(data) - header_length
            return True
        self.packets_dropped += 1
        return self.packets_sent > 0

    def connected(self) -> bool:
        return self.path.connected()

    def restart(self) -> None:
        """The next packet follows the last one sent as after a switch (sequence, timestamp and picture ID
        continuous), whatever its own numbers."""
        self.rewriter.restart()

    def retransmit(self, sequence: int) -> bool:
        """Send again what went out as `sequence` (RTX when negotiated); False when it is no longer kept."""
        entry = self._history[sequence % HISTORY_SIZE]
        if entry is None or entry[0] != sequence:
            return False
        _, data, header_length = entry
        if self.rtx_ssrc is not None and self.rtx_payload_type is not None:
            data = rtx_packet(data, header_length, self.rtx_payload_type, self._rtx_sequence, self.rtx_ssrc)
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        if self.path.send_rtp(data):
            self.retransmitted += 1
        return True

    # RTCP

    def handle_rtcp_data(self, data: bytes) -> None:
        """A compound RTCP packet as received (a plain-RTP leg); malformed ones are ignored."""
        try:
            packets = RtcpPacket.parse(data)
        except (ValueError, IndexError, struct.error):
            return
        for packet in packets:
            self.handle_rtcp(packet)

    def handle_rtcp(self, packet: AnyRtcpPacket) -> None:
        estimate = self.estimate
        if isinstance(packet, RtcpRtpfbPacket):
            if packet.fmt == RTCP_RTPFB_NACK and packet.media_ssrc == self.ssrc:
                estimate.nacks += 1
                for sequence in packet.lost:
                    self.retransmit(sequence)
            elif packet.fmt == RTCP_RTPFB_TWCC:
                estimate.transport_feedbacks += 1
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                estimate.keyframe_requests += 1
                if self.on_keyframe_request is not None:
                    self.on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    estimate.remb_bitrate = bitrate
                    estimate.remb_at = time.monotonic()
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc != self.ssrc:
                    continue
                estimate.fraction_lost = report.fraction_lost / 256
                estimate.packets_lost = report.packets_lost
                estimate.jitter = report.jitter
                last = self._last_report
                if last is not None and report.lsr == last[0] and report.dlsr:
                    estimate.round_trip_time = max(0.0, time.time() - last[1] - report.dlsr / 65536)

    def sender_report(self, now: float | None = None) -> bytes | None:
        """An RTCP SR (with SDES cname) for what was sent so far; None before the first packet."""
        rewriter = self.rewriter
        if not rewriter.started or rewriter.last_arrival is None:
            return None
        wall = time.time() if now is None else now
        monotonic = time.monotonic() - (time.time() - wall)
        source_report = getattr(self._source, "sender_report", None)
        if source_report is not None:
            # the source's own NTP/RTP mapping (its clock), moved onto ours by its arrival time
            arrived, rtp = source_report
            source_rtp = rtp + round((monotonic - arrived) * VIDEO_CLOCK_RATE)
        else:
            source_rtp = rewriter.last_in_timestamp + round((monotonic - rewriter.last_arrival) * VIDEO_CLOCK_RATE)
        rtp_timestamp = rewriter.output_timestamp(source_rtp)
        ntp = ntp_time(wall)
        report = _SR.pack(
            0x80,
            200,
            6,
            self.ssrc,
            ntp >> 32,
            ntp & 0xFFFFFFFF,
            rtp_timestamp,
            self.packets_sent & 0xFFFFFFFF,
            self.octets_sent & 0xFFFFFFFF,
        )
        self._last_report = ((ntp >> 16) & 0xFFFFFFFF, wall)
        if self.cname:
            name = self.cname.encode()[:255]
            chunk = bytes([1, len(name)]) + name + b"\x00"
            chunk += b"\x00" * (-(len(chunk)) % 4)
            report += _SDES_HEADER.pack(0x81, 202, (len(chunk) + 4) // 4, self.ssrc) + chunk
        return report

    def send_sender_report(self) -> None:
        report = self.sender_report()
        if report is not None:
            self.path.send_rtcp(report)


async def send_reports(current: Callable[[], object]) -> None:
    """Send a sender report for the slot's current sender (`current()`, a `SlotSender` or None) every 0.5-1.5 s
    (RFC 3550's randomised interval), until cancelled."""
    while True:
        await asyncio.sleep(0.5 + random.random())
        sender = current()
        if isinstance(sender, SlotSender):
            sender.send_sender_report()
