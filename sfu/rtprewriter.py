"""Packet-level video forwarding: read a received RTP packet once, rewrite its header for each subscriber slot.

A `MediaPacket` is one received video packet, parsed once (header fields, where its payload starts, whether it
starts a keyframe, its VP8 picture ID and TL0PICIDX). A `SlotRewriter` turns it into the packet one slot sends:
the slot's SSRC and payload type, a sequence number and a timestamp continuous across source switches (the
timestamp advanced by the wall-clock gap), the VP8 picture ID and TL0PICIDX kept monotonic (rewritten in the
payload descriptor; the rest of the payload untouched), the slot's own header extensions (MID, abs-send-time).
H.264 payloads pass as they are.

Written here rather than with aiortc's `RtpPacket`: its parse and serialise cost several microseconds a packet and
copy the payload, on a path that runs once per subscriber per packet; and no library rewrites VP8 descriptors.
"""

from __future__ import annotations

import struct
import time

_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
#: RFC 8285 one-byte header extension block
_ONE_BYTE_PROFILE = b"\xbe\xde"

VIDEO_CLOCK_RATE = 90000

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def seq_newer(a: int, b: int) -> bool:
    """Whether 16-bit sequence number `a` comes after `b` (RFC 3550 serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class Vp8Descriptor:
    """Where the RFC 7741 payload descriptor of a packet keeps its picture ID and TL0PICIDX."""

    __slots__ = ("keyframe", "length", "picture_id", "picture_id_bits", "start", "tl0")

    def __init__(self, payload: bytes | memoryview) -> None:
        """Raises ValueError when the descriptor is cut short."""
        size = len(payload)
        if size < 1:
            raise ValueError("empty VP8 payload")
        first = payload[0]
        offset = 1
        self.picture_id = -1
        self.picture_id_bits = 0
        self.tl0 = -1
        if first & 0x80:  # X: extended control bits
            if size < 2:
                raise ValueError("VP8 descriptor cut short")
            flags = payload[1]
            offset = 2
            if flags & 0x80:  # I: picture ID
                if size <= offset:
                    raise ValueError("VP8 picture ID cut short")
                if payload[offset] & 0x80:  # M: 15 bits
                    if size <= offset + 1:
                        raise ValueError("VP8 picture ID cut short")
                    self.picture_id = ((payload[offset] & 0x7F) << 8) | payload[offset + 1]
                    self.picture_id_bits = 15
                    offset += 2
                else:
                    self.picture_id = payload[offset]
                    self.picture_id_bits = 7
                    offset += 1
            if flags & 0x40:  # L: TL0PICIDX
                if size <= offset:
                    raise ValueError("VP8 TL0PICIDX cut short")
                self.tl0 = payload[offset]
                offset += 1
            if flags & 0x30:  # T or K: one byte of TID/Y/KEYIDX
                offset += 1
        if size < offset:
            raise ValueError("VP8 descriptor cut short")
        self.length = offset
        # S bit with partition index 0: the first packet of a frame; its VP8 payload header's P bit is 0 on a key frame
        self.start = first & 0x17 == 0x10
        self.keyframe = self.start and size > offset and not payload[offset] & 0x01


def vp8_resolution(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The width and height a VP8 key frame's header gives (RFC 6386 section 9.1), from the payload of the packet
    that starts it, past the RTP payload descriptor (`data[start:end]`); None when it is no key frame header."""
    if end - start < 10 or data[start] & 0x01 or data[start + 3 : start + 6] != b"\x9d\x01\x2a":
        return None
    width = (data[start + 6] | (data[start + 7] << 8)) & 0x3FFF
    height = (data[start + 8] | (data[start + 9] << 8)) & 0x3FFF
    return width, height


def h264_keyframe(payload: bytes | memoryview) -> bool:
    """Whether an RFC 6184 packet starts an IDR picture or carries an SPS (single NAL, STAP-A, FU-A start)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, then the NAL unit
        offset = 1
        while offset + 2 < len(payload):
            size = (payload[offset] << 8) | payload[offset + 1]
            if payload[offset + 2] & 0x1F in (5, 7):
                return True
            offset += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and the fragmented unit's type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def h264_starts_frame(payload: bytes | memoryview) -> bool:
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == 28:
        return len(payload) > 1 and bool(payload[1] & 0x80)
    return nal_type != 29  # FU-B aside, any other unit starts (or is) a NAL unit


class MediaPacket:
    """One received video RTP packet, parsed once and shared by every slot that forwards it."""

    __slots__ = (
        "arrival",
        "data",
        "frame_start",
        "keyframe",
        "marker",
        "payload_end",
        "payload_start",
        "payload_type",
        "sequence",
        "ssrc",
        "timestamp",
        "vp8",
    )

    def __init__(self, data: bytes, payload_type: int, marker: int, sequence: int, timestamp: int, ssrc: int) -> None:
        self.data = data
        self.payload_type = payload_type
        self.marker = marker
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload_start = 12
        self.payload_end = len(data)
        self.arrival = 0.0
        self.keyframe = False
        self.frame_start = True
        self.vp8: Vp8Descriptor | None = None

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_start : self.payload_end]

    @classmethod
    def parse(cls, data: bytes, codec_name: str, arrival: float | None = None) -> MediaPacket | None:
        """The packet, or None when it is not RTP, is cut short, or carries no payload (padding only)."""
        size = len(data)
        if size < 12 or data[0] >> 6 != 2:
            return None
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if size < offset + 4:
                return None
            offset += 4 + 4 * _U16.unpack_from(data, offset + 2)[0]
        end = size
        if first & 0x20:
            end -= data[-1]
        if end <= offset:
            return None
        packet = cls(data, second & 0x7F, second >> 7, sequence, timestamp, ssrc)
        packet.payload_start = offset
        packet.payload_end = end
        packet.arrival = time.monotonic() if arrival is None else arrival
        payload = memoryview(data)[offset:end]
        if codec_name == "VP8":
            try:
                descriptor = Vp8Descriptor(payload)
            except ValueError:
                return None
            packet.vp8 = descriptor
            packet.keyframe = descriptor.keyframe
            packet.frame_start = descriptor.start
        elif codec_name == "H264":
            packet.keyframe = h264_keyframe(payload)
            packet.frame_start = h264_starts_frame(payload)
        return packet


def unwrap_rtx(data: bytes, payload_type: int, ssrc: int) -> bytes | None:
    """The original packet carried by an RFC 4588 retransmission (its payload opens with the original sequence
    number), with `payload_type` and `ssrc` put back; None for a padding-only or malformed one."""
    packet = MediaPacket.parse(data, "")
    if packet is None or packet.payload_end - packet.payload_start < 3:
        return None
    start = packet.payload_start
    header = bytearray(data[:start])
    header[1] = (header[1] & 0x80) | payload_type
    header[2:4] = data[start : start + 2]
    struct.pack_into("!I", header, 8, ssrc)
    header[0] &= ~0x20 & 0xFF  # the padding is left behind
    return bytes(header) + data[start + 2 : packet.payload_end]


#: padding-only packets carry this much padding (the most one byte can count)
PADDING_SIZE = 255
_PADDING = bytes(PADDING_SIZE - 1) + bytes((PADDING_SIZE,))


def abs_send_time(now: float | None = None) -> int:
    """The abs-send-time extension's value: seconds in 6.18 fixed point, 24 bits."""
    return int((time.time() if now is None else now) * (1 << 18)) & 0xFFFFFF


class SlotRewriter:
    """The header rewrite of one slot: what it sends looks like one continuous stream, whatever the source."""

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        *,
        mid: str | None = None,
        mid_id: int | None = None,
        abs_send_time_id: int | None = None,
        initial_sequence: int = 0,
        initial_timestamp: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self._extension_head = b""  # the block up to the abs-send-time value (which changes per packet)
        self._extension_tail = b""  # its padding, or the whole block without abs-send-time
        self._abs_send_time = False
        self.set_extensions(mid, mid_id, abs_send_time_id)
        self._stream: tuple[object, int] | None = None  # (source, ssrc) being forwarded
        self._seq_offset = 0
        self._ts_offset = 0
        self._picture_offset = 0
        self._tl0_offset = 0
        self._base_sequence: int | None = None  # the stream's first packet: anything older is not sent
        #: the latest (newest) values sent
        self.last_sequence = (initial_sequence - 1) & 0xFFFF
        self.last_timestamp = initial_timestamp
        self.last_picture_id = -1
        self.last_tl0 = -1
        self.last_arrival: float | None = None
        self.last_in_timestamp = 0
        self.started = False

    def set_extensions(self, mid: str | None, mid_id: int | None, abs_send_time_id: int | None) -> None:
        """The header extensions negotiated on the slot's m-line (one-byte form, RFC 8285)."""
        elements = b""
        if mid and mid_id and 1 <= mid_id <= 14:
            encoded = mid.encode()[:16]
            elements += bytes([(mid_id << 4) | (len(encoded) - 1)]) + encoded
        self._abs_send_time = bool(abs_send_time_id and 1 <= abs_send_time_id <= 14)
        size = len(elements) + (4 if self._abs_send_time else 0)
        padding = b"\x00" * (-size % 4)
        head = _ONE_BYTE_PROFILE + _U16.pack((size + len(padding)) // 4) + elements if size else b""
        if self._abs_send_time:
            assert abs_send_time_id is not None
            self._extension_head = head + bytes([(abs_send_time_id << 4) | 2])
            self._extension_tail = padding
        else:
            self._extension_head = b""
            self._extension_tail = head + padding

    @property
    def abs_send_time_offset(self) -> int:
        """Where the abs-send-time value is in the packets written (0: they carry none)."""
        return 12 + len(self._extension_head) if self._abs_send_time else 0

    def padding_packet(self, payload_type: int, sequence: int, ssrc: int, send_time: int) -> bytes:
        """A padding-only packet (RFC 3550: the P bit, `PADDING_SIZE` bytes of padding, the last its count) with
        this slot's extensions and its latest timestamp, on another stream (RTX)."""
        extensions = self._extension_block(send_time)
        header = _HEADER.pack(0xB0 if extensions else 0xA0, payload_type, sequence, self.last_timestamp, ssrc)
        return header + extensions + _PADDING

    def _extension_block(self, send_time: int) -> bytes:
        if self._abs_send_time:
            return self._extension_head + send_time.to_bytes(3, "big") + self._extension_tail
        return self._extension_tail

    def rebase(self, source: object, packet: MediaPacket) -> None:
        """Make `packet` (from `source`) follow what was sent last: the start of a switch, or of a new sender."""
        self._stream = (source, packet.ssrc)
        self._base_sequence = packet.sequence
        if not self.started:
            self._seq_offset = (self.last_sequence + 1 - packet.sequence) & 0xFFFF
            self._ts_offset = (self.last_timestamp - packet.timestamp) & 0xFFFFFFFF
            self._picture_offset = 0
            self._tl0_offset = 0
            return
        gap = 1
        if self.last_arrival is not None:
            gap = max(1, round((packet.arrival - self.last_arrival) * VIDEO_CLOCK_RATE))
        self._seq_offset = (self.last_sequence + 1 - packet.sequence) & 0xFFFF
        self._ts_offset = (self.last_timestamp + gap - packet.timestamp) & 0xFFFFFFFF
        vp8 = packet.vp8
        if vp8 is not None and vp8.picture_id >= 0 and self.last_picture_id >= 0:
            self._picture_offset = (self.last_picture_id + 1 - vp8.picture_id) & 0x7FFF
        else:
            self._picture_offset = 0
        if vp8 is not None and vp8.tl0 >= 0 and self.last_tl0 >= 0:
            self._tl0_offset = (self.last_tl0 + 1 - vp8.tl0) & 0xFF
        else:
            self._tl0_offset = 0

    def restart(self) -> None:
        """Rebase at the next packet, even from the same stream (it skipped packets that will never come)."""
        self._stream = None

    def output_timestamp(self, timestamp: int) -> int:
        """What a timestamp of the stream being forwarded becomes."""
        return (timestamp + self._ts_offset) & 0xFFFFFFFF

    def rewrite(self, source: object, packet: MediaPacket, send_time: int = 0) -> tuple[bytes, int] | None:
        """The packet to send and its header length (extensions included), or None for a packet of the stream
        older than the point it was switched to (its number would clash with the previous stream's).
        `send_time`: the abs-send-time value."""
        if self._stream is None or self._stream[0] is not source or self._stream[1] != packet.ssrc:
            self.rebase(source, packet)
        elif self._base_sequence is not None:
            behind = (self._base_sequence - packet.sequence) & 0xFFFF
            if 0 < behind < 0x8000:
                return None
            if (packet.sequence - self._base_sequence) & 0xFFFF > 0x4000:
                self._base_sequence = None  # far enough on: serial comparisons with it would soon be wrong
        sequence = (packet.sequence + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        extensions = self._extension_block(send_time)
        header = _HEADER.pack(
            0x90 if extensions else 0x80, (packet.marker << 7) | self.payload_type, sequence, timestamp, self.ssrc
        )
        data = packet.data
        vp8 = packet.vp8
        if vp8 is not None and (vp8.picture_id >= 0 or vp8.tl0 >= 0):
            start = packet.payload_start
            picture_id = -1
            parts = [header, extensions, data[start : start + 2]]
            if vp8.picture_id >= 0:
                picture_id = (vp8.picture_id + self._picture_offset) & 0x7FFF
                parts.append(_U16.pack(0x8000 | picture_id))  # always 15 bits: a 7-bit source would wrap at 128
            tl0 = -1
            if vp8.tl0 >= 0:
                tl0 = (vp8.tl0 + self._tl0_offset) & 0xFF
                parts.append(bytes((tl0,)))
            # the TID/Y/KEYIDX byte, if any, stays with the payload
            parts.append(data[start + vp8.length - (1 if data[start + 1] & 0x30 else 0) : packet.payload_end])
            body = b"".join(parts)
            if picture_id >= 0 and (self.last_picture_id < 0 or _newer15(picture_id, self.last_picture_id)):
                self.last_picture_id = picture_id
            if tl0 >= 0 and (self.last_tl0 < 0 or _newer8(tl0, self.last_tl0)):
                self.last_tl0 = tl0
        else:
            body = b"".join((header, extensions, data[packet.payload_start : packet.payload_end]))
        if not self.started or seq_newer(sequence, self.last_sequence):
            self.last_sequence = sequence
            self.last_timestamp = timestamp
            self.last_in_timestamp = packet.timestamp
            self.last_arrival = packet.arrival
            self.started = True
        return body, len(header) + len(extensions)


def _newer15(a: int, b: int) -> bool:
    return a != b and ((a - b) & 0x7FFF) < 0x4000


def _newer8(a: int, b: int) -> bool:
    return a != b and ((a - b) & 0xFF) < 0x80


def rtx_packet(packet: bytes, header_length: int, payload_type: int, sequence: int, ssrc: int) -> bytes:
    """RFC 4588 retransmission of a sent packet: the RTX payload type, sequence and SSRC, the original sequence
    number in front of the original payload; extensions and timestamp kept."""
    header = bytearray(packet[:header_length])
    original = packet[2:4]
    header[1] = (header[1] & 0x80) | payload_type
    _U16.pack_into(header, 2, sequence)
    struct.pack_into("!I", header, 8, ssrc)
    return bytes(header) + original + packet[header_length:]


def find_extension(data: bytes, extension_id: int) -> bytes | None:
    """The value of a one-byte-form (RFC 8285) header extension of a packet, or None."""
    if not data[0] & 0x10 or not extension_id:
        return None
    offset = 12 + 4 * (data[0] & 0x0F)
    if len(data) < offset + 4 or data[offset : offset + 2] != _ONE_BYTE_PROFILE:
        return None
    end = offset + 4 + 4 * _U16.unpack_from(data, offset + 2)[0]
    if end > len(data):
        return None
    offset += 4
    while offset < end:
        byte = data[offset]
        if byte == 0:
            offset += 1
            continue
        element_id, length = byte >> 4, (byte & 0x0F) + 1
        if element_id == 15:
            return None
        if element_id == extension_id:
            return data[offset + 1 : offset + 1 + length]
        offset += 1 + length
    return None
