"""The per-slot header rewrite and the slot's sender: continuity across switches and wraps, keyframes found at
packet level, NACKs answered from what was sent, sender reports that match it."""

from __future__ import annotations

import struct
import time

from aiortc.rtp import (
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
)

from sfu.forwarder import VideoSlot, VideoSource
from sfu.rtprewriter import MediaPacket, SlotRewriter, find_extension, h264_keyframe, unwrap_rtx
from sfu.rtpsender import SlotSender


def vp8_payload(
    picture_id: int | None, *, bits: int = 15, start: bool = True, key: bool = False, tl0: int | None = None
) -> bytes:
    first = 0x10 if start else 0x00
    flags = 0
    extension = b""
    if picture_id is not None:
        flags |= 0x80
        extension += struct.pack("!H", 0x8000 | picture_id) if bits == 15 else bytes([picture_id & 0x7F])
    if tl0 is not None:
        flags |= 0x40
        extension += bytes([tl0])
    descriptor = bytes([first | (0x80 if flags else 0)]) + (bytes([flags]) if flags else b"") + extension
    header = (b"\x10" if key else b"\x11") + b"\x02\x00" if start else b""
    return descriptor + header + b"payload-bytes"


def rtp(
    payload: bytes, seq: int, ts: int, ssrc: int = 1, marker: int = 1, pt: int = 96, arrival: float = 0.0
) -> MediaPacket:
    data = RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)
    packet = MediaPacket.parse(data.serialize(), "VP8", arrival)
    assert packet is not None
    return packet


def parse_out(data: bytes) -> tuple[RtpPacket, int, int]:
    """The sent packet, its picture ID and TL0PICIDX (-1 when absent)."""
    packet = RtpPacket.parse(data)
    from sfu.rtprewriter import Vp8Descriptor

    descriptor = Vp8Descriptor(packet.payload)
    return packet, descriptor.picture_id, descriptor.tl0


def test_vp8_keyframes_and_descriptors_are_read_at_packet_level() -> None:
    key = rtp(vp8_payload(5, key=True), 1, 0)
    assert key.keyframe and key.frame_start and key.vp8 is not None and key.vp8.picture_id == 5
    assert not rtp(vp8_payload(6), 2, 3000).keyframe  # a delta frame's first packet
    assert not rtp(vp8_payload(5, start=False, key=True), 3, 0).keyframe  # a keyframe's later packet
    short = rtp(vp8_payload(100, bits=7, tl0=9), 4, 0)
    assert short.vp8 is not None and (short.vp8.picture_id, short.vp8.picture_id_bits, short.vp8.tl0) == (100, 7, 9)
    # a descriptor announcing a picture ID it does not carry is not a packet
    assert MediaPacket.parse(RtpPacket(payload_type=96, payload=b"\x90\x80").serialize(), "VP8") is None
    assert MediaPacket.parse(b"\x80\x60garbage", "VP8") is None
    assert MediaPacket.parse(b"\x90\x60" + b"\x00" * 10, "VP8") is None  # extension header cut off


def test_h264_keyframes_in_single_nal_stap_a_and_fu_a() -> None:
    assert h264_keyframe(b"\x65idr") and h264_keyframe(b"\x67sps")
    assert not h264_keyframe(b"\x41slice")
    stap = b"\x78" + struct.pack("!H", 4) + b"\x67sps" + struct.pack("!H", 4) + b"\x68pps"
    assert h264_keyframe(stap)
    assert h264_keyframe(b"\x7c\x85frag") and not h264_keyframe(b"\x7c\x05frag")  # FU-A: start bit needed
    assert not h264_keyframe(b"\x7c\x81frag")


def test_sequence_timestamp_and_picture_id_continue_across_a_switch_and_wrap() -> None:
    rewriter = SlotRewriter(0xABCD, 100, initial_sequence=65534, initial_timestamp=0xFFFFFFF0)
    a, b = object(), object()
    sent = []
    for i in range(4):
        out = rewriter.rewrite(
            a, rtp(vp8_payload(32766 + i & 0x7FFF, key=i == 0, tl0=254 + i & 0xFF), 10 + i, 3000 * i, arrival=i / 30)
        )
        assert out is not None
        sent.append(parse_out(out[0]))
    assert [p.sequence_number for p, _, _ in sent] == [65534, 65535, 0, 1]  # sequence wrap
    assert [p.timestamp for p, _, _ in sent] == [0xFFFFFFF0, (0xFFFFFFF0 + 3000) & 0xFFFFFFFF, 5984, 8984]
    assert [pid for _, pid, _ in sent] == [32766, 32767, 0, 1]  # 15-bit picture ID wrap passed through
    assert [tl0 for _, _, tl0 in sent] == [254, 255, 0, 1]
    assert all(p.ssrc == 0xABCD and p.payload_type == 100 for p, _, _ in sent)

    # another source, its own numbering and clock, arriving 100 ms after the last packet: continuous output
    out = rewriter.rewrite(b, rtp(vp8_payload(7, bits=7, key=True, tl0=40), 5000, 123456, ssrc=2, arrival=3 / 30 + 0.1))
    assert out is not None
    packet, pid, tl0 = parse_out(out[0])
    assert packet.sequence_number == 2 and packet.ssrc == 0xABCD
    assert packet.timestamp == 8984 + 9000  # advanced by the wall-clock gap (0.1 s at 90 kHz)
    assert (pid, tl0) == (2, 2)  # a 7-bit source is written with 15 bits, continuing from the last
    # the payload after the descriptor is untouched
    assert packet.payload.endswith(b"\x10\x02\x00payload-bytes")

    # a late packet of the new source from before the switch point would clash: not sent
    assert rewriter.rewrite(b, rtp(vp8_payload(6, bits=7), 4999, 123456 - 3000, ssrc=2)) is None


def test_picture_ids_of_a_7_bit_source_are_unwrapped_by_the_source() -> None:
    source = VideoSource("a", "VP8", lambda: None)
    seen = []
    for i, pid in enumerate([126, 127, 0, 1]):
        packet = rtp(vp8_payload(pid, bits=7, key=i == 0), 100 + i, 3000 * i)
        source.on_packet(packet)
        assert packet.vp8 is not None
        seen.append(packet.vp8.picture_id)
    assert seen == [126, 127, 128, 129]


class _Path:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.up = True

    def connected(self) -> bool:
        return self.up

    def send_rtp(self, data: bytes) -> bool:
        if self.up:
            self.rtp.append(data)
        return self.up

    def send_rtcp(self, data: bytes) -> bool:
        self.rtcp.append(data)
        return True


def test_nack_is_answered_from_history_with_rtx_and_reports_match_what_was_sent() -> None:
    path = _Path()
    asked: list[int] = []
    sender = SlotSender(
        path,
        1111,
        96,
        rtx_ssrc=2222,
        rtx_payload_type=97,
        cname="slot",
        mid="2",
        mid_id=4,
        abs_send_time_id=3,
        on_keyframe_request=lambda: asked.append(1),
    )
    source = object()
    start = time.monotonic() - 1
    for i in range(10):
        sender.forward(source, rtp(vp8_payload(i), 500 + i, 3000 * i, arrival=start + i / 30))
    sent = [RtpPacket.parse(d) for d in path.rtp]
    assert len(sent) == 10 and all(p.ssrc == 1111 for p in sent)
    raw = path.rtp[3]
    assert find_extension(raw, 4) == b"2" and len(find_extension(raw, 3) or b"") == 3

    nack = RtcpRtpfbPacket(fmt=1, ssrc=9, media_ssrc=1111, lost=[sent[3].sequence_number, sent[7].sequence_number])
    sender.handle_rtcp_data(bytes(nack))
    retransmissions = path.rtp[10:]
    assert len(retransmissions) == 2 and sender.retransmitted == 2
    for resent, original in zip(retransmissions, (path.rtp[3], path.rtp[7]), strict=True):
        packet = RtpPacket.parse(resent)
        assert packet.ssrc == 2222 and packet.payload_type == 97
        restored = unwrap_rtx(resent, 96, 1111)
        assert restored is not None and RtpPacket.parse(restored).payload == RtpPacket.parse(original).payload
        assert RtpPacket.parse(restored).sequence_number == RtpPacket.parse(original).sequence_number
    # a packet never sent (or long gone) is not made up
    sender.handle_rtcp_data(bytes(RtcpRtpfbPacket(fmt=1, ssrc=9, media_ssrc=1111, lost=[sent[0].sequence_number - 5])))
    assert len(path.rtp) == 12

    # PLI and REMB from the subscriber
    sender.handle_rtcp_data(bytes(RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=1111)))
    sender.handle_rtcp_data(bytes(RtcpPsfbPacket(fmt=15, ssrc=9, media_ssrc=0, fci=pack_remb_fci(750000, [1111]))))
    assert asked == [1] and sender.estimate.remb_bitrate is not None and 700000 < sender.estimate.remb_bitrate <= 750000

    # the sender report counts what went out and maps to the stream's timeline
    report = sender.sender_report()
    assert report is not None
    sr, sdes = RtcpPacket.parse(report)
    assert isinstance(sdes, RtcpSdesPacket) and sdes.chunks[0].items == [(1, b"slot")]
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == 1111
    assert sr.sender_info.packet_count == 10 + 0 and sr.sender_info.octet_count == sum(len(p.payload) for p in sent)
    # (the last packet left about 0.7 s ago: the report's RTP time is that much later, on the stream's clock)
    assert 0.6 * 90000 < (sr.sender_info.rtp_timestamp - sent[-1].timestamp) & 0xFFFFFFFF < 0.9 * 90000


def test_slot_forwards_packets_and_switches_on_a_keyframe_packet() -> None:
    path = _Path()
    requests = {"a": 0, "b": 0}
    a = VideoSource("a", "VP8", lambda: requests.__setitem__("a", requests["a"] + 1))
    b = VideoSource("b", "VP8", lambda: requests.__setitem__("b", requests["b"] + 1))
    slot = VideoSlot(0, "3", "VP8")
    slot.active = True
    slot.sender = SlotSender(path, 1, 96)
    slot.assign(a)
    assert requests["a"] == 1
    a.on_packet(rtp(vp8_payload(1), 1, 0))
    assert path.rtp == []  # nothing before a keyframe
    a.on_packet(rtp(vp8_payload(2, key=True), 2, 3000, marker=0))
    a.on_packet(rtp(vp8_payload(2, start=False), 3, 3000))
    assert len(path.rtp) == 2
    slot.assign(b)
    b.on_packet(rtp(vp8_payload(50), 900, 90000, ssrc=7))
    a.on_packet(rtp(vp8_payload(3), 4, 6000))  # the previous source goes on meanwhile
    assert len(path.rtp) == 3 and slot.current is a
    b.on_packet(rtp(vp8_payload(51, key=True), 901, 93000, ssrc=7))
    a.on_packet(rtp(vp8_payload(4), 5, 9000))  # no longer
    assert len(path.rtp) == 4 and slot.current is b and a.slots == set()
    sequences = [RtpPacket.parse(d).sequence_number for d in path.rtp]
    assert [(s - sequences[0]) & 0xFFFF for s in sequences] == [0, 1, 2, 3]
    # a keyframe request from the subscriber reaches the source shown, at most once per 500 ms
    before = requests["b"]
    slot.on_keyframe_request()
    slot.on_keyframe_request()
    assert requests["b"] == before  # asked at the switch, moments ago


def test_the_tid_keyidx_byte_and_the_payload_after_it_are_kept() -> None:
    # X, S; I (15-bit picture ID), L (TL0PICIDX), T and K (TID/Y/KEYIDX byte 0xa5), then a key frame's header
    payload = b"\x90\xf0\x80\x10\x07\xa5" + b"\x10\x02\x00" + b"frame"
    rewriter = SlotRewriter(9, 96, mid="0", mid_id=1, abs_send_time_id=3)
    out = rewriter.rewrite(object(), rtp(payload, 1, 0))
    assert out is not None
    packet, picture_id, tl0 = parse_out(out[0])
    assert (picture_id, tl0) == (0x10, 7) and packet.payload == payload
    assert find_extension(out[0], 1) == b"0" and out[1] == 12 + 4 + 8  # the header and its extension block
