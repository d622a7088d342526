"""A VP8 peer over plain RTP (RTP/AVP: no SRTP, no ICE), as a SIP video phone or Asterisk sends and receives video.

Written apart from sfu/ (its own RTP, RFC 7741 payload and RTCP feedback code; PyAV's libvpx and vp8 codecs) so
that the tests using it check the gateway rather than agree with it.

Sending (when given a colour): a solid-colour 160x120 picture at `fps`, a keyframe first, then every
`keyframe_interval` seconds and at the next frame after a PLI or FIR (whatever media SSRC it names).
Receiving: packets of `payload_type` are put together by timestamp; a frame is decoded only when complete (marker
seen, no sequence gap) and, for a new stream, once its first keyframe came. A stream that was decoding and loses a
frame asks for a keyframe (at most once a second while it waits); a new stream waits for its sender to start with
a keyframe, without asking. Malformed datagrams are ignored.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import struct
import time
from collections.abc import Callable
from typing import NamedTuple, cast

import av
import numpy as np
from av.video.frame import PictureType

from tests.sfu.clients import COLOURS, nearest_colour

MAX_PACKET = 1200  # bytes of an RTP packet: header, VP8 payload descriptor and data
CLOCK = 90000
WIDTH, HEIGHT = 160, 120
RR, PSFB, FIR_2032 = 201, 206, 192  # RTCP packet types
PLI_FMT, FIR_FMT = 1, 4

Address = tuple[str, int]


class RtpPacket(NamedTuple):
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    """The RTP header's fields and the payload (CSRCs, header extension and padding skipped); None if malformed."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if len(data) < start + 4:
            return None
        start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    if end <= start:
        return None
    _, second, seq, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    return RtpPacket(second & 0x7F, bool(second & 0x80), seq, timestamp, ssrc, data[start:end])


def vp8_payload(payload: bytes) -> tuple[bool, bytes] | None:
    """RFC 7741 section 4.2: (first packet of the frame, VP8 data) after the payload descriptor; None if malformed."""
    if len(payload) < 2:
        return None
    start = 1
    if payload[0] & 0x80:  # X: an extension byte follows
        flags, start = payload[1], 2
        if flags & 0x80:  # I: PictureID, 7 or 15 bits (M)
            if len(payload) <= start:
                return None
            start += 2 if payload[start] & 0x80 else 1
        start += bool(flags & 0x40) + bool(flags & 0x30)  # L: TL0PICIDX; T or K: TID/Y/KEYIDX
    if len(payload) <= start:
        return None
    return bool(payload[0] & 0x10) and payload[0] & 0x07 == 0, payload[start:]


def is_keyframe(frame: bytes) -> bool:
    """RFC 6386 section 9.1: the frame tag's first bit is 0 on a key frame."""
    return bool(frame) and frame[0] & 0x01 == 0


def asks_for_keyframe(data: bytes) -> bool:
    """Whether a compound RTCP packet holds a PLI or FIR (RFC 4585, 5104) or an RFC 2032 FIR; False if malformed."""
    found, offset = False, 0
    while len(data) >= offset + 4:
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != 2:
            return False
        found = found or packet_type == FIR_2032 or (packet_type == PSFB and first & 0x1F in (PLI_FMT, FIR_FMT))
        offset += 4 * (words + 1)
    return found and offset == len(data)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, received: Callable[[bytes, Address], None]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received(data, addr)


class RtpVideoPeer(asyncio.DatagramProtocol):
    """One VP8 video stream on an RTP/RTCP port pair of 127.0.0.1 (see the module's docstring)."""

    def __init__(
        self, colour: str | None, payload_type: int = 96, keyframe_interval: float = 10.0, fps: int = 15
    ) -> None:
        self.colour = colour  # may be changed while sending: the next frame shows the new colour
        self.payload_type = payload_type
        self.keyframe_interval = keyframe_interval
        self.fps = fps
        self.max_packet = MAX_PACKET
        self.remote_rtp: Address | None = None
        self.remote_rtcp: Address | None = None
        self.ssrc = random.getrandbits(32)
        self.remote_ssrc: int | None = None  # of the last media packet received
        self.colours: list[str] = []
        self.packets_received = self.frames_decoded = self.frames_dropped = 0
        self.packets_sent = self.frames_sent = self.keyframes_sent = 0
        self.keyframe_requests_received = self.keyframe_requests_sent = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._picture_id = random.getrandbits(15)
        self._keyframe_wanted = True
        self._fir_seq = 0
        self._decoder = av.CodecContext.create("vp8", "r")
        self._frame_timestamp: int | None = None  # of the frame being put together
        self._parts: list[bytes] = []
        self._broken = False
        self._next_seq: int | None = None
        self._synced = False  # decoding: the last keyframe and every frame since came whole
        self._recovering = False  # a frame was lost after decoding had started: asking for a keyframe
        self._last_request = float("-inf")

    # -- sockets
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(100):
            transport, _protocol = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
            port = int(transport.get_extra_info("sockname")[1])
            if port % 2 == 0:
                try:
                    rtcp, _socket = await loop.create_datagram_endpoint(
                        lambda: _Socket(self._rtcp_received), local_addr=("127.0.0.1", port + 1)
                    )
                except OSError:
                    pass
                else:
                    self._rtcp_transport = cast(asyncio.DatagramTransport, rtcp)
                    return
            transport.close()
        raise OSError("no free RTP/RTCP port pair on 127.0.0.1")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self._transport is not None, "open() first"
        return int(self._transport.get_extra_info("sockname")[1])

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    def start(self, remote_rtp: Address, remote_rtcp: Address | None = None) -> None:
        """Send to (or, again, redirect toward) these addresses; the sender starts once, if there is a colour."""
        self.remote_rtp = remote_rtp
        self.remote_rtcp = remote_rtcp or (remote_rtp[0], remote_rtp[1] + 1)
        if self.colour is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()

    # -- sending
    async def _send_loop(self) -> None:
        encoder = cast(av.VideoCodecContext, av.CodecContext.create("libvpx", "w"))
        encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        encoder.time_base = fractions.Fraction(1, self.fps)
        encoder.bit_rate = 200_000
        encoder.gop_size = 1 << 30  # keyframes only when asked for (libvpx alone puts one every 128 frames)
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        start, last_keyframe, n = time.monotonic(), 0.0, 0
        while True:
            if time.monotonic() - last_keyframe >= self.keyframe_interval:
                self._keyframe_wanted = True
            colour = COLOURS[self.colour or "red"]
            image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
            image[:, :] = colour
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = n
            if self._keyframe_wanted:
                frame.pict_type = PictureType.I
                self._keyframe_wanted, last_keyframe = False, time.monotonic()
            for packet in encoder.encode(frame):
                self._send_frame(bytes(packet))
            n += 1
            await asyncio.sleep(max(0.0, start + n / self.fps - time.monotonic()))

    def _send_frame(self, data: bytes) -> None:
        if self._transport is None or self.remote_rtp is None:
            return
        chunk = self.max_packet - 12 - 4
        for offset in range(0, len(data), chunk):
            last = offset + chunk >= len(data)
            header = struct.pack("!BBHII", 0x80, last << 7 | self.payload_type, self._seq, self._timestamp, self.ssrc)
            # X=1, S on the frame's first packet, PartID 0; I=1; M=1 and a 15-bit PictureID
            descriptor = bytes((0x90 if offset == 0 else 0x80, 0x80, 0x80 | self._picture_id >> 8))
            descriptor += bytes((self._picture_id & 0xFF,))
            self._transport.sendto(header + descriptor + data[offset : offset + chunk], self.remote_rtp)
            self._seq = (self._seq + 1) & 0xFFFF
            self.packets_sent += 1
        self._picture_id = (self._picture_id + 1) & 0x7FFF
        self._timestamp = (self._timestamp + CLOCK // self.fps) & 0xFFFFFFFF
        self.frames_sent += 1
        self.keyframes_sent += is_keyframe(data)

    # -- receiving
    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) >= 2 and 64 <= data[1] & 0x7F <= 95:  # RFC 5761: RTCP on the RTP port
            self._rtcp_received(data, addr)
            return
        packet = parse_rtp(data)
        parsed = vp8_payload(packet.payload) if packet is not None else None
        if packet is None or parsed is None or packet.payload_type != self.payload_type:
            return
        if self.remote_rtp is None:
            self.remote_rtp = addr
            self.remote_rtcp = self.remote_rtcp or (addr[0], addr[1] + 1)
        self.packets_received += 1
        if packet.ssrc != self.remote_ssrc:  # a new stream: wait for its first keyframe
            self.remote_ssrc, self._next_seq, self._parts = packet.ssrc, None, []
            self._synced = self._recovering = False
        gap = self._next_seq is not None and packet.seq != self._next_seq
        self._next_seq = (packet.seq + 1) & 0xFFFF
        starts, data = parsed
        if packet.timestamp != self._frame_timestamp or not self._parts:
            if self._parts or (gap and starts):  # the previous frame never saw its marker, or whole ones were lost
                self._drop()
            self._frame_timestamp, self._parts, self._broken = packet.timestamp, [], not starts
        else:
            self._broken = self._broken or gap
        self._parts.append(data)
        if packet.marker:
            frame, self._parts = b"".join(self._parts), []
            if self._broken:
                self._drop()
            else:
                self._decode(frame)

    def _decode(self, frame: bytes) -> None:
        if not self._synced and not is_keyframe(frame):
            self._drop()
            return
        try:
            pictures = self._decoder.decode(av.Packet(frame))
        except (av.FFmpegError, ValueError):
            self._drop()
            return
        if is_keyframe(frame):
            self._synced, self._recovering = True, False
        for picture in pictures:
            self.frames_decoded += 1
            self.colours.append(nearest_colour(cast(av.VideoFrame, picture)))

    def _drop(self) -> None:
        self.frames_dropped += 1
        self._recovering = self._recovering or self._synced
        self._synced = False
        if self._recovering and time.monotonic() - self._last_request >= 1.0:
            self.request_keyframe()

    def colours_seen(self, last: int = 5) -> str | None:
        """The colour most of the last `last` decoded frames showed."""
        recent = self.colours[-last:]
        return max(set(recent), key=recent.count) if recent else None

    # -- RTCP
    def _rtcp_received(self, data: bytes, addr: Address) -> None:
        if self.remote_rtcp is None:
            self.remote_rtcp = addr
        if asks_for_keyframe(data):
            self.keyframe_requests_received += 1
            self._keyframe_wanted = True

    def request_keyframe(self) -> None:
        """An empty receiver report, a PLI and a FIR for the last media SSRC received, to the remote RTCP port."""
        if self._rtcp_transport is None or self.remote_rtcp is None:
            return
        media = self.remote_ssrc or 0
        self._fir_seq = (self._fir_seq + 1) & 0xFF
        packet = struct.pack("!BBHI", 0x80, RR, 1, self.ssrc)
        packet += struct.pack("!BBHII", 0x80 | PLI_FMT, PSFB, 2, self.ssrc, media)
        packet += struct.pack("!BBHIIIB3x", 0x80 | FIR_FMT, PSFB, 4, self.ssrc, 0, media, self._fir_seq)
        self._rtcp_transport.sendto(packet, self.remote_rtcp)
        self.keyframe_requests_sent += 1
        self._last_request = time.monotonic()
