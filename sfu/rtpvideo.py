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
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import MediaDescription

from .forwarder import VideoSlot, VideoSource
from .ports import PortAllocator, bind_rtp_pair
from .rtprewriter import MediaPacket, seq_newer
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


def asks_keyframe(data: bytes) -> bool:
    """Whether a (compound) RTCP packet holds a PLI, a FIR (RFC 5104) or an RFC 2032 FIR. Malformed: False."""
    offset = 0
    while offset + 4 <= len(data):
        first, packet_type, length = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != 2:
            return False
        if packet_type == RTCP_FIR_RFC2032 or (packet_type == RTCP_PSFB and first & 0x1F in (PSFB_PLI, PSFB_FIR)):
            return True
        offset += (length + 1) * 4
    return False


class _RtcpSocket(asyncio.DatagramProtocol):
    def __init__(self, stream: RtpVideoStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stream.rtcp_received(data, addr)


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
    ) -> None:
        self.owner_id = owner_id
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
        self._picture_fast_update = picture_fast_update
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._reports: asyncio.Task[None] | None = None
        self._ssrc = random.getrandbits(32)
        self._remote_ssrc = 0
        self._highest: int | None = None
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
        transport, _ = await loop.create_datagram_endpoint(lambda: _RtcpSocket(self), sock=rtcp)
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
            self._highest = None
            if self.slot is not None:
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
            self.source.close()
            self.source = None

    def _slot_sender(self, slot: VideoSlot, codec: VideoCodec) -> SlotSender:
        # keyframe requests are read by `rtcp_received` (RFC 2032's FIR too), not by the sender
        return SlotSender(self.path, self._ssrc, codec.payload_type)

    # receiving

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        if 192 <= data[1] <= 223:
            self.rtcp_received(data, addr)  # RTCP multiplexed on the RTP port (RFC 5761)
            return
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
        if packet.ssrc != self._remote_ssrc:
            self._remote_ssrc, self._highest = packet.ssrc, None
        highest = self._highest
        if highest is None or seq_newer(packet.sequence, highest):
            if highest is not None and packet.sequence != (highest + 1) & 0xFFFF:
                self.losses += 1
                source.lost_packets()
            self._highest = packet.sequence
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
            if self.slot is not None:
                self.slot.on_keyframe_request()
        sender = self.slot.sender if self.slot is not None else None
        if isinstance(sender, SlotSender):
            sender.handle_rtcp_data(data)  # NACKs, receiver reports

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
            self.slot.close()
            self.slot = None
        if self._reports is not None:
            self._reports.cancel()
            self._reports = None

    # lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reports = self._reports
        self._stop_sending()
        if self.source is not None:
            self.source.close()
            self.source = None
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = self._rtcp_transport = None
        self._update_path()
        if reports is not None:
            await asyncio.gather(reports, return_exceptions=True)
