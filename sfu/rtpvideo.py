"""One video stream of a plain-RTP leg (an ``m=video`` over RTP/AVP or RTP/AVPF): its RTP and RTCP sockets.

Received packets are put back together into encoded frames (`FrameAssembler`) and handed, never decoded, to the
stream's `VideoSource`; a frame with a missing packet is dropped and the sender asked for a keyframe, and nothing is
forwarded until that keyframe comes (a decoder downstream would show a broken picture otherwise). Frames to send come
from the stream's `VideoSlot` (the current speaker) and are packetised by aiortc's packers (RFC 7741 for VP8, RFC
6184 for H.264). Keyframes are asked for and answered with RTCP PLI and FIR (RFC 4585, RFC 5104) and RFC 2032's FIR:
what Asterisk sends and understands for VP8 (it forwards them between ConfBridge members).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import av
from aiortc.codecs import depayload, get_encoder
from aiortc.codecs.base import Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import MediaDescription

from .codecs import is_keyframe
from .forwarder import VideoSlot, VideoSource
from .ports import PortAllocator, bind_rtp_pair
from .sdp import media_destination

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90000
#: payload types used when offering video
OFFER_PAYLOAD_TYPES = {"VP8": 96, "H264": 97}
H264_FMTP = "profile-level-id=42e01f;packetization-mode=1"

_RTP_HEADER = struct.Struct("!BBHII")
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


def _starts_frame(codec: VideoCodec, payload: bytes) -> bool:
    """Whether a packet holds the start of a frame, when the previous frame's end is unknown."""
    if codec.name == "VP8":
        # RFC 7741 section 4.2: S bit set and partition index 0 in the payload descriptor
        return bool(payload) and payload[0] & 0x17 == 0x10
    return True


class FrameAssembler:
    """Rebuilds one sender's encoded frames from its RTP packets: a frame is the packets of one timestamp, ending
    at the marker bit, complete when no sequence number is missing since the previous frame's end."""

    def __init__(self, codec: VideoCodec) -> None:
        self.codec = codec
        self._parameters = codec.parameters()
        self._timestamp: int | None = None
        self._finished: int | None = None  # timestamp of the last frame ended by a marker (late duplicates)
        self._parts: dict[int, bytes] = {}
        self._end: int | None = None  # sequence number of the previous frame's last packet
        self._ssrc: int | None = None

    def push(self, packet: RtpPacket) -> tuple[bytes | None, bool]:
        """Returns the completed frame (or None) and whether a frame was lost on the way."""
        if packet.ssrc != self._ssrc:
            # a new sender (a restarted phone, another source on the stream): its numbering starts afresh
            self._ssrc, self._timestamp, self._finished, self._parts, self._end = packet.ssrc, None, None, {}, None
        lost = False
        if packet.timestamp != self._timestamp:
            if packet.timestamp == self._finished:
                return None, False
            if self._parts:
                lost = True  # the previous frame's marker never came
                self._end = None
            self._timestamp = packet.timestamp
            self._parts = {}
        self._parts[packet.sequence_number] = packet.payload
        if not packet.marker:
            return None, lost
        last = packet.sequence_number
        if self._end is not None:
            first = (self._end + 1) & 0xFFFF
        else:
            first = (last - max((last - seq) & 0xFFFF for seq in self._parts)) & 0xFFFF
        count = ((last - first) & 0xFFFF) + 1
        parts, self._parts = self._parts, {}
        self._end, self._finished, self._timestamp = last, packet.timestamp, None
        if count > len(parts):
            return None, True
        order = [(first + i) & 0xFFFF for i in range(count)]
        if any(seq not in parts for seq in order):
            return None, True
        if not _starts_frame(self.codec, parts[first]):
            return None, True
        try:
            frame = b"".join(depayload(self._parameters, parts[seq]) for seq in order)
        except (ValueError, IndexError, AssertionError):
            return None, True
        return (frame or None), lost


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


class RtpVideoStream(asyncio.DatagramProtocol):
    """One m=video of a plain-RTP leg: sends the slot's frames, receives into the source, or both."""

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
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.rtcp_mux = False
        self.packets_received = 0
        self.packets_sent = 0
        self.frames_lost = 0
        self.keyframe_requests_received = 0
        self._picture_fast_update = picture_fast_update
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._assembler: FrameAssembler | None = None
        self._packer: Encoder | None = None
        self._sender: asyncio.Task[None] | None = None
        self._waiting_keyframe = True
        self._ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(15)
        self._timestamp_offset = random.getrandbits(32)
        self._remote_ssrc = 0
        self._fir_sequence = 0
        self._closed = False

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

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

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
            self._assembler = FrameAssembler(codec)
            self._packer = get_encoder(codec.parameters())
            self._waiting_keyframe = True
            if self.slot is not None:
                self.slot.codec_name = codec.name
                self.slot.assign(None)  # the room points it again at a source in the new codec
        if remote is not None:  # else the peer's packets tell (symmetric RTP)
            self.remote = remote
            self.remote_rtcp = remote_rtcp or (remote if rtcp_mux else media_destination(remote[0], remote[1] + 1))
        self.rtcp_mux = rtcp_mux
        if send and self.slot is None:
            self.slot = VideoSlot(0, None, codec.name)
            self.slot.active = True
            self._sender = asyncio.get_running_loop().create_task(self._send_frames(self.slot))
        elif not send and self.slot is not None:
            self._stop_sending()
        if receive and self.source is None:
            self.source = VideoSource(self.owner_id, codec.name, self.request_keyframe)
            self._waiting_keyframe = True
        elif not receive and self.source is not None:
            self.source.close()
            self.source = None

    # receiving

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        if 192 <= data[1] <= 223:
            self.rtcp_received(data, addr)  # RTCP multiplexed on the RTP port (RFC 5761)
            return
        codec, assembler, source = self.codec, self._assembler, self.source
        if codec is None or assembler is None or source is None or data[1] & 0x7F != codec.payload_type:
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        self.packets_received += 1
        self.remote = (addr[0], addr[1])  # symmetric RTP
        self._remote_ssrc = packet.ssrc
        frame, lost = assembler.push(packet)
        if lost:
            self.frames_lost += 1
            self._waiting_keyframe = True
            source.request_keyframe()
        if frame is None:
            return
        if self._waiting_keyframe:
            if not is_keyframe(codec.name, frame):
                source.request_keyframe()
                return
            self._waiting_keyframe = False
        source.on_frame(codec.name, frame, packet.timestamp)

    def rtcp_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.rtcp_mux:
            self.remote_rtcp = (addr[0], addr[1])
        if asks_keyframe(data):
            self.keyframe_requests_received += 1
            if self.slot is not None:
                self.slot.on_keyframe_request()

    def request_keyframe(self) -> None:
        """Ask the sender of this stream for a keyframe (the source's keyframe requests come here): by RTCP, and
        for H.264 also by SIP INFO (`picture_fast_update`), as Asterisk does: H.264 phones often heed only that."""
        if self._closed:
            return
        target = self.remote_rtcp
        transport = self._transport if self.rtcp_mux else self._rtcp_transport
        if target is not None and transport is not None:
            self._fir_sequence += 1
            transport.sendto(keyframe_request(self._ssrc, self._remote_ssrc, self._fir_sequence), target)
        if self.codec is not None and self.codec.name == "H264" and self._picture_fast_update is not None:
            self._picture_fast_update()

    # sending

    async def _send_frames(self, slot: VideoSlot) -> None:
        while True:
            try:
                packet = await slot.track.recv()
            except MediaStreamError:
                return
            self._send_frame(packet)

    def _send_frame(self, packet: av.Packet) -> None:
        codec, packer, transport, remote = self.codec, self._packer, self._transport, self.remote
        if codec is None or packer is None or transport is None or remote is None:
            return
        payloads, timestamp = packer.pack(packet)
        timestamp = (timestamp + self._timestamp_offset) & 0xFFFFFFFF
        last = len(payloads) - 1
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == last else 0
            header = _RTP_HEADER.pack(0x80, marker | codec.payload_type, self._sequence, timestamp, self._ssrc)
            transport.sendto(header + payload, remote)
            self._sequence = (self._sequence + 1) & 0xFFFF
            self.packets_sent += 1

    def _stop_sending(self) -> None:
        if self.slot is not None:
            self.slot.close()
            self.slot = None
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None

    # lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        sender = self._sender
        self._stop_sending()
        if self.source is not None:
            self.source.close()
            self.source = None
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = self._rtcp_transport = None
        if sender is not None:
            await asyncio.gather(sender, return_exceptions=True)
