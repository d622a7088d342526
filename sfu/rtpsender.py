"""A slot's own RTP sender: one header rewrite, one send on the leg's path, and what a receiver needs from a sender.

Two paths, one sender: a WebRTC leg protects each packet with the SRTP keys its DTLS transport derived and sends it
on the ICE transport's nominated pair (`aiortc_adapter.IceSrtpPath`); a plain-RTP leg sends it as is
(`PlainRtpPath`). The sender keeps a history of what it sent to answer NACKs (RTX where negotiated), sends RTCP
sender reports (NTP/RTP mapping on this machine's clock, from the source's own reports when it sent some, so the
browser can line the picture up with the mixer's audio), hands PLI/FIR to the slot (which passes them on to the
source) through a `KeyframeRequestGate` (retransmission first, at most one a second), and keeps what the subscriber
says of its link (REMB, receiver reports, transport-cc feedback) in a `ReceiverEstimate`, feeding the leg's
`BandwidthEstimate` (sfu/bandwidth.py) too.

With the leg's `Pacer` (sfu/pacer.py), packets and retransmissions go through it: at once while the subscriber's
estimate allows, else queued for a bounded time (the abs-send-time restamped as they leave); the sender also sends
the RTX padding the pacer probes with.

Written here rather than using aiortc's RTCRtpSender: that one packs frames and runs a task per sender; this path
forwards packets as they come, with no queue in between but the pacer's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

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

from .keyframerequests import KeyframeRequestGate, repair_time
from .pacer import Pacer
from .quality import LinkState, MediaCounters, ReceiverReport, SenderReportLog, ntp_time
from .rtprewriter import VIDEO_CLOCK_RATE, MediaPacket, SlotRewriter, abs_send_time, rtx_packet
from .sdes import SrtpContext

if TYPE_CHECKING:
    from .forwarder import VideoSlot, VideoSource

logger = logging.getLogger(__name__)

#: packets kept per slot to answer NACKs (about 3 s of a 1.5 Mbit/s stream)
HISTORY_SIZE = 512
#: RTCP transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions)
RTCP_RTPFB_TWCC = 15
_SR = struct.Struct("!BBHIIIIII")
_SDES_HEADER = struct.Struct("!BBHI")
_SEQUENCE = struct.Struct("!H")


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
    """What one subscriber's receiver tells of its link about one slot (the pacer's `BandwidthEstimate` takes in
    those of all the leg's slots)."""

    remb_bitrate: int | None = None
    remb_at: float = 0.0
    #: reception report blocks received about this sender (the figures below are the latest one's)
    reports: int = 0
    fraction_lost: float = 0.0
    packets_lost: int = 0
    jitter: int = 0
    round_trip_time: float | None = None
    transport_feedbacks: int = 0
    nacks: int = 0
    keyframe_requests: int = 0


#: the link's loss is read over this long at least, and this many packets the receiver expected at least
LOSS_WINDOW = 1.0
LOSS_WINDOW_PACKETS = 20


#: a slot that sent media this recently is one its receiver reports on
MEDIA_RECENT = 0.5


class LossWindow:
    """The share of one stream's packets the link lost, from its receiver's reports, read over `LOSS_WINDOW` or
    more. Not the reports' own fraction: a browser sends a report with each NACK, so that fraction often covers a
    few packets (one lost of two reads 50 %). What we dropped ourselves (the pacer, for its queue bound, after the
    packet had its number) is not the link's: counted as the link's, it would cut the estimate, which makes the
    pacer drop more, and so on down."""

    def __init__(self) -> None:
        #: when the window started: the time, the extended highest sequence, the cumulative loss, our drops
        self._start: tuple[float, int, int, int] | None = None

    def update(self, highest_sequence: int, packets_lost: int, dropped_here: int) -> float | None:
        """The link's loss over the window just ended (None: it is not over)."""
        now = time.monotonic()
        start = self._start
        if start is None or highest_sequence < start[1]:
            self._start = (now, highest_sequence, packets_lost, dropped_here)
            return None
        started, first_sequence, first_lost, first_dropped = start
        expected = highest_sequence - first_sequence
        if now - started < LOSS_WINDOW or expected < LOSS_WINDOW_PACKETS:
            return None
        self._start = (now, highest_sequence, packets_lost, dropped_here)
        link_lost = packets_lost - first_lost - (dropped_here - first_dropped)
        return min(1.0, max(0.0, link_lost / expected))


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
        pacer: Pacer | None = None,
        remb: bool = False,
    ) -> None:
        """`pacer`: the leg's, which packets go through and whose estimate the receiver's RTCP feeds; `remb`: the
        receiver negotiated REMB (goog-remb), which then counts in that estimate."""
        self.path = path
        self.pacer = pacer
        self.remb = remb
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
        self.keyframe_requests = KeyframeRequestGate(self._forward_keyframe_request)
        self.packets_sent = 0
        self.octets_sent = 0
        self.packets_dropped = 0
        self.retransmitted = 0
        self._history: list[tuple[int, bytes, int] | None] = [None] * HISTORY_SIZE
        self._resent_at = [0.0] * HISTORY_SIZE  # when each packet of the history was last sent again (0: never)
        self._rtx_sequence = random.getrandbits(15)
        self._source: object | None = None
        self._reports = SenderReportLog()
        #: the link's loss read from the reports about the media stream and the RTX stream (retransmissions and the
        #: probes' padding: a probe into a full link shows there first)
        self._media_sent_at = -1e9
        self._media_loss = LossWindow()
        self._rtx_loss = LossWindow()
        #: where the abs-send-time value is in what this sender sends (0: it has none), for the pacer to restamp
        self._stamp_at = self.rewriter.abs_send_time_offset
        if pacer is not None and rtx_ssrc is not None and rtx_payload_type is not None:
            pacer.padders.append(self.send_padding)

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
        index = sequence % HISTORY_SIZE
        self._history[index] = (sequence, data, header_length)
        self._resent_at[index] = 0.0
        gate = self.keyframe_requests
        if packet.keyframe:
            gate.keyframe_sent(time.monotonic(), self.estimate.round_trip_time)
        elif gate.pending:
            gate.poll(time.monotonic())
        pacer = self.pacer
        if pacer is None:
            sent = self.path.send_rtp(data)
        else:
            sent = pacer.send(self.path.send_rtp, data, stamp_at=self._stamp_at)
        if sent:
            self.packets_sent += 1
            self._media_sent_at = time.monotonic()
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
        index = sequence % HISTORY_SIZE
        entry = self._history[index]
        if entry is None or entry[0] != sequence:
            return False
        self._resent_at[index] = time.monotonic()
        _, data, header_length = entry
        send: Callable[[bytes], bool] = self.path.send_rtp
        if self.rtx_ssrc is not None and self.rtx_payload_type is not None:
            data = rtx_packet(data, header_length, self.rtx_payload_type, 0, self.rtx_ssrc)
            send = self._send_rtx
        if self.pacer is None:
            sent = send(data)
        else:
            sent = self.pacer.send(send, data, stamp_at=self._stamp_at, retransmission=True)
        if sent:
            self.retransmitted += 1
        return True

    def _send_rtx(self, packet: bytes) -> bool:
        """Send an RTX packet, numbered now: what the pacer drops before it leaves leaves no gap in the RTX stream's
        numbering, whose reports then tell the link's loss alone."""
        sent = self.path.send_rtp(packet[:2] + _SEQUENCE.pack(self._rtx_sequence) + packet[4:])
        if sent:
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        return sent

    def send_padding(self, carrying_media: bool = False) -> int:
        """One RTX padding-only packet (a bandwidth probe, which receivers count and drop), sent now; its size,
        0 when none can be sent (no RTX, or the path is down, or `carrying_media` and no media went out within
        `MEDIA_RECENT`)."""
        rtx_ssrc, rtx_payload_type = self.rtx_ssrc, self.rtx_payload_type
        if rtx_ssrc is None or rtx_payload_type is None:
            return 0
        if carrying_media and time.monotonic() - self._media_sent_at > MEDIA_RECENT:
            return 0
        data = self.rewriter.padding_packet(rtx_payload_type, 0, rtx_ssrc, abs_send_time())
        return len(data) if self._send_rtx(data) else 0

    def request_keyframe(self) -> None:
        """A keyframe for the receiver, asked for as if it had asked (through its keyframe-request gate)."""
        self.keyframe_requests.request(time.monotonic())

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
                self._answer_nack(packet.lost)
            elif packet.fmt == RTCP_RTPFB_TWCC:
                estimate.transport_feedbacks += 1
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.keyframe_requested()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    estimate.remb_bitrate = bitrate
                    estimate.remb_at = time.monotonic()
                    if self.pacer is not None and self.remb:
                        self.pacer.estimate.on_remb(bitrate, ssrcs, estimate.remb_at)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc != self.ssrc:
                    if report.ssrc == self.rtx_ssrc and self.pacer is not None:
                        # its numbers are given as packets leave (`_send_rtx`): a gap there is the link's
                        lost = self._rtx_loss.update(report.highest_sequence, report.packets_lost, 0)
                        if lost is not None:
                            self.pacer.estimate.on_report(lost, None)
                    continue
                estimate.reports += 1
                estimate.fraction_lost = report.fraction_lost / 256
                estimate.packets_lost = report.packets_lost
                estimate.jitter = report.jitter
                round_trip = self._reports.round_trip_time(report.lsr, report.dlsr, ntp_time(time.time()))
                if round_trip is not None:
                    estimate.round_trip_time = round_trip
                if self.pacer is not None:
                    lost = self._media_loss.update(report.highest_sequence, report.packets_lost, self.packets_dropped)
                    self.pacer.estimate.on_report(lost, round_trip)

    def _answer_nack(self, lost: list[int]) -> None:
        """Send again what the subscriber lost, and tell its keyframe gate whether that can repair the loss."""
        now = time.monotonic()
        gate = self.keyframe_requests
        round_trip = self.estimate.round_trip_time
        resent = False
        for sequence in lost:
            index = sequence % HISTORY_SIZE
            previous = self._resent_at[index]
            if previous and now - previous > repair_time(round_trip):
                gate.repair_failed()  # asked again after its resend had time to arrive: that one was lost too
            if self.retransmit(sequence):
                resent = True
            else:
                gate.repair_failed()  # no longer kept
        if resent:
            gate.retransmitted(now, round_trip)

    def keyframe_requested(self) -> None:
        """The subscriber sent a PLI or FIR (RFC 4585, RFC 5104; RFC 2032's FIR on plain RTP)."""
        self.estimate.keyframe_requests += 1
        self.keyframe_requests.request(time.monotonic())

    def _forward_keyframe_request(self) -> None:
        if self.on_keyframe_request is not None:
            self.on_keyframe_request()

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
        self._reports.sent(ntp)
        if self.cname:
            name = self.cname.encode()[:255]
            chunk = bytes([1, len(name)]) + name + b"\x00"
            chunk += b"\x00" * (-(len(chunk)) % 4)
            report += _SDES_HEADER.pack(0x81, 202, (len(chunk) + 4) // 4, self.ssrc) + chunk
        return report

    # call quality

    def count_into(self, counters: MediaCounters) -> None:
        """Add what this sender sent, and what its receiver reported and asked for, to `counters`."""
        counters.video_packets_out += self.packets_sent
        counters.video_bytes_out += self.octets_sent
        counters.video_lost_out += max(0, self.estimate.packets_lost)
        counters.nacks_received += self.estimate.nacks
        counters.retransmissions += self.retransmitted

    def receiver_report(self) -> ReceiverReport | None:
        """What its receiver last reported, if anything yet."""
        estimate = self.estimate
        if not estimate.reports:
            return None
        return ReceiverReport(estimate.fraction_lost, max(0, estimate.packets_lost), estimate.jitter / VIDEO_CLOCK_RATE)

    def send_sender_report(self) -> None:
        report = self.sender_report()
        if report is not None:
            self.path.send_rtcp(report)


def add_video_figures(state: LinkState, sources: Iterable[VideoSource], slots: Iterable[VideoSlot]) -> None:
    """The video part of a leg's `LinkState`: the resolution it sends, what each of its slots shows, and (unless
    its audio said already) the round trip and the latest report of its slots' receivers (the worst one)."""
    state.sending = next((source.resolution for source in sources if source.resolution is not None), None)
    worst: ReceiverReport | None = None
    for slot in slots:
        shown = slot.current
        if shown is not None:
            state.receiving.append((shown.owner_id, shown.resolution))
        sender = slot.sender
        if not isinstance(sender, SlotSender):
            continue
        report = sender.receiver_report()
        if report is not None and (worst is None or report.fraction_lost > worst.fraction_lost):
            worst = report
        if state.round_trip_time is None:
            state.round_trip_time = sender.estimate.round_trip_time
    if worst is not None:
        state.reports["video"] = worst


async def send_reports(current: Callable[[], object]) -> None:
    """Send a sender report for the slot's current sender (`current()`, a `SlotSender` or None) every 0.5-1.5 s
    (RFC 3550's randomised interval), until cancelled."""
    while True:
        await asyncio.sleep(0.5 + random.random())
        sender = current()
        if isinstance(sender, SlotSender):
            sender.send_sender_report()
