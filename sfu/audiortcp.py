"""RTCP for a plain-RTP leg's audio (RFC 3550): the reports a phone or Asterisk expects of its RTP peer, and where
that participant's call quality comes from.

Every few seconds a compound packet goes to the peer's RTCP address: a sender report for the mix we send (our
NTP/RTP mapping and counts; a receiver report before we sent anything), with a reception report block for the
peer's stream (loss, jitter, and the LSR/DLSR echoing its own sender reports), and our CNAME. The peer's reports
are read back: its sender reports (echoed in ours), and its report blocks about our stream: loss, jitter, and the
round trip from the LSR/DLSR it echoes.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtp import (
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

from .quality import InboundStream, ReceiverReport, SenderReportLog, ntp_time

#: seconds between reports, randomised by half either way (RFC 3550 section 6.2's minimum is 5 s)
REPORT_INTERVAL = 5.0
_SDES_CNAME = 1


@dataclass(slots=True)
class OutboundAudio:
    """What the leg sent so far: for the sender report's counts and its NTP/RTP mapping."""

    packets: int = 0
    octets: int = 0
    #: the RTP timestamp of the last packet sent, and time.monotonic() when it went
    timestamp: int = 0
    sent_at: float = 0.0
    clock_rate: int = 8000


class AudioRtcp:
    """The RTCP of one audio stream we send (`ssrc`) and receive (`inbound`)."""

    def __init__(self, ssrc: int, inbound: InboundStream, outbound: OutboundAudio) -> None:
        self.ssrc = ssrc
        self.inbound = inbound
        self.outbound = outbound
        self.cname = f"{secrets.token_hex(8)}@meetings".encode()
        #: what the peer's receiver last reported of our stream, and the round trip it measured (seconds)
        self.report: ReceiverReport | None = None
        self.round_trip_time: float | None = None
        self._sent = SenderReportLog()

    def compound(self, wall: float, monotonic: float) -> bytes:
        """The report to send now (`wall`: time.time(), `monotonic`: time.monotonic())."""
        blocks = []
        reception = self.inbound.reception
        if reception is not None and self.inbound.ssrc is not None:
            fraction, lost, highest, jitter, lsr, dlsr = reception.report_block(monotonic)
            blocks.append(RtcpReceiverInfo(self.inbound.ssrc, fraction, lost, highest, jitter, lsr, dlsr))
        outbound = self.outbound
        head: RtcpSrPacket | RtcpRrPacket
        if outbound.packets:
            ntp = ntp_time(wall)
            rtp = outbound.timestamp + round((monotonic - outbound.sent_at) * outbound.clock_rate)
            info = RtcpSenderInfo(ntp, rtp & 0xFFFFFFFF, outbound.packets & 0xFFFFFFFF, outbound.octets & 0xFFFFFFFF)
            head = RtcpSrPacket(ssrc=self.ssrc, sender_info=info, reports=blocks)
            self._sent.sent(ntp)
        else:
            head = RtcpRrPacket(ssrc=self.ssrc, reports=blocks)
        sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=self.ssrc, items=[(_SDES_CNAME, self.cname)])])
        return bytes(head) + bytes(sdes)

    def received(self, data: bytes, wall: float, monotonic: float) -> None:
        """A compound RTCP packet from the peer (clear); malformed ones are ignored."""
        try:
            packets = RtcpPacket.parse(data)
        except (ValueError, IndexError, struct.error):
            return
        for packet in packets:
            if not isinstance(packet, (RtcpSrPacket, RtcpRrPacket)):
                continue
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.inbound.ssrc:
                reception = self.inbound.reception
                if reception is not None:
                    reception.sender_report(packet.sender_info.ntp_timestamp, monotonic)
            for block in packet.reports:
                if block.ssrc != self.ssrc:
                    continue
                self.report = ReceiverReport(
                    fraction_lost=block.fraction_lost / 256,
                    packets_lost=max(0, block.packets_lost),
                    jitter=block.jitter / self.outbound.clock_rate,
                )
                round_trip = self._sent.round_trip_time(block.lsr, block.dlsr, ntp_time(wall))
                if round_trip is not None:
                    self.round_trip_time = round_trip

    async def run(self, send: Callable[[bytes], object]) -> None:
        """Send a report every `REPORT_INTERVAL` (randomised; the first after half of it), until cancelled."""
        interval = REPORT_INTERVAL / 2
        while True:
            await asyncio.sleep(interval * (0.5 + random.random()))
            interval = REPORT_INTERVAL
            send(self.compound(time.time(), time.monotonic()))
