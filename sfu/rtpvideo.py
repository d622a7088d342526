"""One video stream of a plain-RTP leg (an ``m=video`` over RTP/AVP or RTP/AVPF): its RTP and RTCP sockets.

The same forwarding core as WebRTC legs, on plain RTP: received packets go one by one to the stream's
`VideoSource` (phones seldom answer NACKs: after a gap in the sender's numbering the slots showing it go on from
its next keyframe, asked for at once), and
the stream's `VideoSlot` (the current speaker) sends through a `SlotSender` on a `PlainRtpPath` (header rewrite,
one ``sendto``; sender reports; NACKs answered from its history). Keyframes are asked for and answered with RTCP PLI
and FIR (RFC 4585, RFC 5104) and RFC 2032's FIR: what Asterisk sends and understands for VP8 (it forwards them
between ConfBridge members).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import MediaDescription

from .forwarder import VideoSlot, VideoSource
from .pacer import Pacer
from .ports import PortAllocator, bind_rtp_pair
from .quality import InboundStream, MediaCounters
from .rtprewriter import MediaPacket
from .rtpsender import PlainRtpPath, SlotSender, send_reports
from .sdp import media_destination

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90000
#: payload types used when offering video
OFFER_PAYLOAD_TYPES = {"VP8": 96, "H264": 97}
H264_FMTP = "profile-level-id=42e01f;packetization-mode=1"

_RTCP_HEADER = struct.Struct("!BBH")
RTCP_SR, RTCP_RR, RTCP_PSFB, RTCP_FIR_RFC2032 = 200, 201, 206, 192
PSFB_PLI, PSFB_FIR = 1, 4


@dataclass(frozen=True)
class VideoCodec:
    """A video codec as negotiated on one stream: name as in rtpmap (VP8, H264) and payload type."""

    name: str
    payload_type: int

    def parameters(self) -> RTCRtpCodecParameters:
        extra: dict[str, str | int | None] = {"packetization-mode": "1"} if self.name == "H264" else {}
        return RTCRtpCodecParameters(
            mimeType=f"video/{self.name}", clockRate=VIDEO_CLOCK_RATE, payloadType=self.payload_type, parameters=extra
        )

    def sdp_lines(self) -> list[str]:
        lines = [f"a=rtpmap:{self.payload_type} {self.name}/{VIDEO_CLOCK_RATE}"]
        if self.name == "H264":
            lines.append(f"a=fmtp:{self.payload_type} {H264_FMTP}")
        lines += [f"a=rtcp-fb:{self.payload_type} ccm fir", f"a=rtcp-fb:{self.payload_type} nack pli"]
        return lines


def offered_video_codecs(media: MediaDescription, preference: tuple[str, ...]) -> list[VideoCodec]:
    """The codecs of an ``m=video`` we can forward, in our order of preference: those its format list names (an
    rtpmap alone offers nothing), H.264 only in packetization mode 1 (the mode aiortc's packer produces)."""
    listed = {str(f) for f in media.fmt}
    usable: dict[str, VideoCodec] = {}
    for codec in media.rtp.codecs:
        name = codec.name.upper()
        if name not in preference or name in usable or codec.clockRate != VIDEO_CLOCK_RATE:
            continue
        if str(codec.payloadType) not in listed:
            continue
        if name == "H264" and str(codec.parameters.get("packetization-mode", "0")) != "1":
            continue
        usable[name] = VideoCodec(name, codec.payloadType or 0)
    return [usable[name] for name in preference if name in usable]


def _psfb(fmt: int, sender_ssrc: int, media_ssrc: int, fci: bytes = b"") -> bytes:
    length = 2 + len(fci) // 4
    return struct.pack("!BBHII", 0x80 | fmt, RTCP_PSFB, length, sender_ssrc, media_ssrc) + fci


def keyframe_request(sender_ssrc: int, media_ssrc: int, fir_sequence: int) -> bytes:
    """A compound RTCP packet asking `media_ssrc` for a keyframe: an empty receiver report, PLI and FIR."""
    report = struct.pack("!BBHI", 0x80, RTCP_RR, 1, sender_ssrc)
    fir = struct.pack("!IB3x", media_ssrc, fir_sequence & 0xFF)
    return report + _psfb(PSFB_PLI, sender_ssrc, media_ssrc) + _psfb(PSFB_FIR, sender_ssrc, 0, fir)


def _rtcp_kinds(data: bytes) -> list[tuple[int, int]]:
    """(packet type, format/count field) of each packet of a compound RTCP packet, up to a malformed one."""
    kinds = []
    offset = 0
    while offset + 4 <= len(data):
        first, packet_type, length = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != 2:
            break
        kinds.append((packet_type, first & 0x1F))
        offset += (length + 1) * 4
    return kinds


def asks_keyframe(data: bytes) -> bool:
    """Whether a (compound) RTCP packet holds a PLI, a FIR (RFC 5104) or an RFC 2032 FIR. Malformed: False."""
    return any(
        kind == RTCP_FIR_RFC2032 or (kind == RTCP_PSFB and fmt in (PSFB_PLI, PSFB_FIR))
        for kind, fmt in _rtcp_kinds(data)
    )


def has_rfc2032_fir(data: bytes) -> bool:
    """Whether a (compound) RTCP packet holds RFC 2032's FIR (which RTCP parsers that know RFC 5104 skip)."""
    return any(kind == RTCP_FIR_RFC2032 for kind, _ in _rtcp_kinds(data))


class RtcpSocket(asyncio.DatagramProtocol):
    """The RTCP port of a stream: what comes in goes to `handler(data, address)`."""

    def __init__(self, handler: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handler(data, addr)


#: packets in sequence (one SSRC) an address must send before it is taken as the stream's sender, and how long the
#: sender must be silent before another address may take over: plain RTP has no authentication, so without this
#: anyone who finds the port could replace the picture and steal the stream (symmetric RTP sends where it latched)
PROBATION_PACKETS = 4
SENDER_SILENCE = 2.0


class _Probation:
    """An address trying to become the stream's sender: its packets so far, kept until it passes."""

    def __init__(self, address: tuple[str, int], packet: MediaPacket) -> None:
        self.address = address
        self.packets = [packet]

    def follows(self, address: tuple[str, int], packet: MediaPacket) -> bool:
        last = self.packets[-1]
        return address == self.address and packet.ssrc == last.ssrc and packet.sequence == (last.sequence + 1) & 0xFFFF


class RtpVideoStream(asyncio.DatagramProtocol):
    """One m=video of a plain-RTP leg: sends the slot's packets, receives into the source, or both."""

    def __init__(
        self,
        owner_id: str,
        address: str,
        ports: PortAllocator | None,
        picture_fast_update: Callable[[], None] | None = None,
        *,
        pacer: Pacer | None = None,
    ) -> None:
        self.owner_id = owner_id
        #: the leg's pacer, which the slot's packets go through
        self.pacer = pacer
        self.address = address
        self.ports = ports
        self.codec: VideoCodec | None = None
        self.source: VideoSource | None = None
        self.slot: VideoSlot | None = None
        self.path = PlainRtpPath()
        self.rtcp_mux = False
        self.packets_received = 0
        #: gaps seen in the sender's sequence numbers (each asks it for a keyframe)
        self.losses = 0
        self.keyframe_requests_received = 0
        #: event-loop time spent on the packets received (take in, fan out to the slots showing them)
        self.forwarding_seconds = 0.0
        self._picture_fast_update = picture_fast_update
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._reports: asyncio.Task[None] | None = None
        self._ssrc = random.getrandbits(32)
        self._remote_ssrc = 0
        #: what the sender sent: packets, loss, jitter
        self.inbound = InboundStream(VIDEO_CLOCK_RATE)
        #: what the stream's earlier senders sent and sources asked for (a codec change replaces them)
        self._retired = MediaCounters()
        self._sender_address: tuple[str, int] | None = None
        self._last_received = 0.0
        self._probation: _Probation | None = None
        self._fir_sequence = 0
        self._closed = False

    @property
    def remote(self) -> tuple[str, int] | None:
        return self.path.remote

    @remote.setter
    def remote(self, address: tuple[str, int] | None) -> None:
        self.path.remote = address

    @property
    def remote_rtcp(self) -> tuple[str, int] | None:
        return self.path.remote_rtcp

    @remote_rtcp.setter
    def remote_rtcp(self, address: tuple[str, int] | None) -> None:
        self.path.remote_rtcp = address

    @property
    def packets_sent(self) -> int:
        sender = self.slot.sender if self.slot is not None else None
        return sender.packets_sent if isinstance(sender, SlotSender) else 0

    @property
    def sends(self) -> bool:
        return self.slot is not None

    @property
    def receives(self) -> bool:
        return self.source is not None

    @property
    def direction(self) -> str:
        """Our side's SDP direction."""
        return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
            (self.sends, self.receives), "inactive"
        )

    # sockets

    async def open(self) -> None:
        if self._transport is not None:
            return
        if self.ports is not None:
            rtp, rtcp = self.ports.bind_pair(self.address)
        else:
            rtp, rtcp = bind_rtp_pair(self.address)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=rtp)
        transport, _ = await loop.create_datagram_endpoint(lambda: RtcpSocket(self.rtcp_received), sock=rtcp)
        self._rtcp_transport = cast(asyncio.DatagramTransport, transport)
        self._update_path()

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._update_path()

    def _update_path(self) -> None:
        self.path.rtp = self._transport
        self.path.rtcp = self._transport if self.rtcp_mux else self._rtcp_transport

    # negotiation

    def configure(
        self,
        codec: VideoCodec,
        *,
        send: bool,
        receive: bool,
        remote: tuple[str, int] | None,
        remote_rtcp: tuple[str, int] | None,
        rtcp_mux: bool,
    ) -> None:
        """Apply what the offer/answer settled for this stream (again on every re-offer)."""
        if codec != self.codec:
            self.codec = codec
            self.inbound.restart()
            if self.slot is not None:
                self._retire_sender()
                self.slot.codec_name = codec.name
                self.slot.sender = self._slot_sender(self.slot, codec)
                self.slot.assign(None)  # the room points it again at a source in the new codec
        if remote is not None:  # else the peer's packets tell (symmetric RTP)
            self.remote = remote
            self.remote_rtcp = remote_rtcp or (remote if rtcp_mux else media_destination(remote[0], remote[1] + 1))
        self.rtcp_mux = rtcp_mux
        self._update_path()
        if send and self.slot is None:
            self.slot = VideoSlot(0, None, codec.name)
            self.slot.sender = self._slot_sender(self.slot, codec)
            self.slot.active = True
            slot = self.slot
            self._reports = asyncio.get_running_loop().create_task(send_reports(lambda: slot.sender))
        elif not send and self.slot is not None:
            self._stop_sending()
        if receive and self.source is None:
            self.source = VideoSource(self.owner_id, codec.name, self.request_keyframe)
        elif not receive and self.source is not None:
            self._retire_source()

    def _slot_sender(self, slot: VideoSlot, codec: VideoCodec) -> SlotSender:
        return SlotSender(
            self.path, self._ssrc, codec.payload_type, on_keyframe_request=slot.on_keyframe_request, pacer=self.pacer
        )

    # receiving

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        if 192 <= data[1] <= 223:
            self.rtcp_received(data, addr)  # RTCP multiplexed on the RTP port (RFC 5761)
            return
        started = time.perf_counter()
        self._take(data, addr)
        self.forwarding_seconds += time.perf_counter() - started

    def _take(self, data: bytes, addr: tuple[str, int]) -> None:
        srtp = self.path.srtp
        if srtp is not None:
            clear = srtp.unprotect(data)
            if clear is None:
                return  # forged, replayed or damaged
            data = clear
        codec, source = self.codec, self.source
        if codec is None or source is None or data[1] & 0x7F != codec.payload_type:
            return
        packet = MediaPacket.parse(data, codec.name)
        if packet is None:
            return
        address = (addr[0], addr[1])
        if address != self._sender_address:
            if self._sender_address is not None and packet.arrival - self._last_received < SENDER_SILENCE:
                return  # someone else while the sender is sending: ignored
            probation = self._probation
            if probation is None or not probation.follows(address, packet):
                self._probation = _Probation(address, packet)
                return
            probation.packets.append(packet)
            if len(probation.packets) < PROBATION_PACKETS:
                return
            self._sender_address, self._probation = address, None
            self.remote = address  # symmetric RTP
            for held in probation.packets:
                self._receive(source, held)
            return
        self._receive(source, packet)

    def _receive(self, source: VideoSource, packet: MediaPacket) -> None:
        self.packets_received += 1
        self._last_received = packet.arrival
        self._remote_ssrc = packet.ssrc
        size = packet.payload_end - packet.payload_start
        if self.inbound.add(packet.ssrc, packet.sequence, packet.timestamp, packet.arrival, size) > 1:
            self.losses += 1
            source.lost_packets()
        source.on_packet(packet)

    def rtcp_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._sender_address is not None and addr[0] != self._sender_address[0]:
            return  # only the sender's host speaks RTCP for this stream
        srtp = self.path.srtp
        if srtp is not None:
            clear = srtp.unprotect_rtcp(data)
            if clear is None:
                return
            data = clear
        if not self.rtcp_mux:
            self.remote_rtcp = (addr[0], addr[1])
        if asks_keyframe(data):
            self.keyframe_requests_received += 1
        sender = self.slot.sender if self.slot is not None else None
        if isinstance(sender, SlotSender):
            # NACKs, receiver reports, PLI and FIR (through the sender's keyframe gate, to the slot)
            sender.handle_rtcp_data(data)
            if has_rfc2032_fir(data):
                sender.keyframe_requested()

    def request_keyframe(self) -> None:
        """Ask the sender of this stream for a keyframe (the source's keyframe requests come here): by RTCP, and
        for H.264 also by SIP INFO (`picture_fast_update`), as Asterisk does: H.264 phones often heed only that."""
        if self._closed:
            return
        self._fir_sequence += 1
        self.path.send_rtcp(keyframe_request(self._ssrc, self._remote_ssrc, self._fir_sequence))
        if self.codec is not None and self.codec.name == "H264" and self._picture_fast_update is not None:
            self._picture_fast_update()

    # sending

    def _stop_sending(self) -> None:
        if self.slot is not None:
            self._retire_sender()
            self.slot.close()
            self.slot = None
        if self._reports is not None:
            self._reports.cancel()
            self._reports = None

    # call quality

    def count_into(self, counters: MediaCounters) -> None:
        """Add what this stream received, sent and was asked for, since it opened, to `counters`."""
        counters.add(self._retired)
        counters.video_packets_in += self.inbound.packets
        counters.video_bytes_in += self.inbound.octets
        counters.video_lost_in += self.inbound.lost
        counters.keyframe_requests_received += self.keyframe_requests_received
        counters.forwarding_seconds += self.forwarding_seconds
        if self.source is not None:
            counters.keyframe_requests_sent += self.source.keyframe_requests
        sender = self.slot.sender if self.slot is not None else None
        if isinstance(sender, SlotSender):
            sender.count_into(counters)

    def _retire_sender(self) -> None:
        sender = self.slot.sender if self.slot is not None else None
        if isinstance(sender, SlotSender):
            sender.count_into(self._retired)

    def _retire_source(self) -> None:
        if self.source is not None:
            self._retired.keyframe_requests_sent += self.source.keyframe_requests
            self.source.close()
            self.source = None

    # lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reports = self._reports
        self._stop_sending()
        if self.source is not None:
            self._retire_source()
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = self._rtcp_transport = None
        self._update_path()
        if reports is not None:
            await asyncio.gather(reports, return_exceptions=True)
