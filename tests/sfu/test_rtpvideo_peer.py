"""The plain-RTP VP8 test peer (tests/sfu/rtpvideo.py) against itself: pictures, keyframe requests, bad datagrams."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.sfu.rtpvideo import RtpVideoPeer, asks_for_keyframe, parse_rtp, vp8_payload
from tests.waiting import until

LOCAL = "127.0.0.1"


@pytest.fixture
async def peers() -> AsyncIterator[Callable[..., Any]]:
    opened: list[RtpVideoPeer] = []

    async def make(colour: str | None, **kwargs: Any) -> RtpVideoPeer:
        peer = RtpVideoPeer(colour, **kwargs)
        await peer.open()
        opened.append(peer)
        return peer

    yield make
    for peer in opened:
        await peer.close()


@pytest.fixture
async def loop_errors() -> list[dict[str, Any]]:
    """What the event loop's exception handler saw (a protocol callback that raised, for one)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
    return errors


async def test_pictures_cross_both_ways(peers: Callable[..., Any], loop_errors: list[dict[str, Any]]) -> None:
    red: RtpVideoPeer = await peers("red")
    blue: RtpVideoPeer = await peers("blue")
    other_type: RtpVideoPeer = await peers(None, payload_type=100)
    assert red.port % 2 == 0 and red.rtcp_port == red.port + 1
    red.start((LOCAL, blue.port))
    await until(lambda: blue.frames_decoded >= 3, 2, "red frames at the blue peer")
    assert blue.remote_rtp == (LOCAL, red.port) and blue.remote_rtcp == (LOCAL, red.rtcp_port)  # latched
    blue.start((LOCAL, red.port))
    await until(lambda: red.frames_decoded >= 3, 2, "blue frames at the red peer")
    assert blue.colours_seen() == "red" and red.colours_seen() == "blue"
    assert blue.frames_dropped == 0 and red.keyframes_sent == 1 and blue.remote_ssrc == red.ssrc
    red.start((LOCAL, other_type.port))  # packets of another payload type are not taken
    await asyncio.sleep(0.2)
    assert other_type.packets_received == 0 and other_type.colours_seen() is None
    assert not loop_errors


async def test_fragmented_frames_and_a_new_colour(peers: Callable[..., Any]) -> None:
    red: RtpVideoPeer = await peers("red")
    blue: RtpVideoPeer = await peers("blue")
    red.max_packet = blue.max_packet = 40  # every frame in several packets
    red.start((LOCAL, blue.port))
    blue.start((LOCAL, red.port))
    await until(lambda: red.frames_decoded >= 5 and blue.frames_decoded >= 5, 2, "frames both ways")
    assert red.colours_seen() == "blue" and blue.colours_seen() == "red"
    assert blue.packets_received >= 2 * blue.frames_decoded and blue.frames_dropped == 0
    red.colour = "yellow"  # the sender shows the new colour without restarting
    await until(lambda: blue.colours_seen(3) == "yellow", 2, "yellow at the blue peer")


async def test_late_receiver_decodes_after_its_keyframe_request(peers: Callable[..., Any]) -> None:
    sender: RtpVideoPeer = await peers("green")
    elsewhere: RtpVideoPeer = await peers(None)
    late: RtpVideoPeer = await peers(None)
    sender.start((LOCAL, elsewhere.port))
    await until(lambda: elsewhere.frames_decoded >= 3, 2, "the first frames")
    sender.start((LOCAL, late.port))  # a re-INVITE: the same sender, no new keyframe
    await until(lambda: late.packets_received >= 4, 2, "packets at the late receiver")
    assert late.frames_decoded == 0 and late.frames_dropped >= 1 and late.keyframe_requests_sent == 0
    assert sender.keyframes_sent == 1 and sender.keyframe_requests_received == 0
    late.request_keyframe()  # to the sender's RTCP port, latched from its RTP packets
    await until(lambda: late.frames_decoded >= 1, 1, "a decoded frame after the keyframe request")
    assert sender.keyframe_requests_received == 1 and sender.keyframes_sent == 2
    assert late.keyframe_requests_sent == 1 and late.colours == ["green"] * len(late.colours)


async def test_a_lost_frame_is_dropped_and_a_keyframe_asked_for(peers: Callable[..., Any]) -> None:
    sender: RtpVideoPeer = await peers("blue")
    receiver: RtpVideoPeer = await peers(None)
    sender.start((LOCAL, receiver.port))
    await until(lambda: receiver.frames_decoded >= 2, 2, "the first frames")
    sender._seq = (sender._seq + 3) & 0xFFFF  # three packets lost on the way
    await until(lambda: sender.keyframes_sent == 2, 1, "a keyframe for the receiver's request")
    decoded = receiver.frames_decoded
    await until(lambda: receiver.frames_decoded > decoded, 1, "frames again")
    assert receiver.frames_dropped >= 1 and receiver.keyframe_requests_sent == 1
    assert sender.keyframe_requests_received == 1 and receiver.colours_seen() == "blue"


async def test_rtcp_on_the_rtp_port_and_rfc2032_fir(peers: Callable[..., Any]) -> None:
    sender: RtpVideoPeer = await peers("magenta")
    receiver: RtpVideoPeer = await peers(None)
    sender.start((LOCAL, receiver.port))
    await until(lambda: receiver.frames_decoded >= 1, 2, "the first frame")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(struct.pack("!BBHII", 0x81, 206, 2, 1, sender.ssrc), (LOCAL, sender.port))  # PLI, muxed
        await until(lambda: sender.keyframes_sent == 2, 1, "a keyframe for the muxed PLI")
        raw.sendto(struct.pack("!BBHI", 0x80, 192, 1, sender.ssrc), (LOCAL, sender.rtcp_port))  # RFC 2032 FIR
        await until(lambda: sender.keyframes_sent == 3, 1, "a keyframe for the RFC 2032 FIR")
    assert sender.keyframe_requests_received == 2 and receiver.frames_dropped == 0


async def test_malformed_datagrams_are_ignored(peers: Callable[..., Any], loop_errors: list[dict[str, Any]]) -> None:
    sender: RtpVideoPeer = await peers("red")
    receiver: RtpVideoPeer = await peers(None)
    sender.start((LOCAL, receiver.port))
    await until(lambda: receiver.frames_decoded >= 2, 2, "the first frames")
    header = struct.pack("!BBHII", 0x80, 0x80 | 96, 7, 9000, 1234)
    junk = [
        b"",
        b"\x80",
        bytes(range(256)) * 3,
        header[:8],  # truncated RTP header
        header,  # no payload
        header + b"\x90",  # payload descriptor cut short
        header + b"\x90\x80\x80",  # PictureID cut short
        b"\x8f" + header[1:] + b"\x10\x00",  # 15 CSRCs announced, none there
        b"\x90" + header[1:] + b"\xbe\xde\xff\xff",  # header extension longer than the packet
        b"\xa0" + header[1:] + b"\x10\x00\xff",  # padding longer than the packet
        struct.pack("!BBH", 0x81, 206, 2) + b"\x00\x00",  # truncated PLI
        struct.pack("!BBHII", 0x81, 206, 2, 1, 2)[:-1],  # PLI one byte short
        struct.pack("!BBHII", 0x01, 206, 2, 1, 2),  # version 0
        struct.pack("!BBHI", 0x80, 201, 1, 5) + struct.pack("!BBHII", 0x81, 206, 9, 1, 2),  # length past the end
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for data in junk:
            for port in (receiver.port, receiver.rtcp_port, sender.port, sender.rtcp_port):
                raw.sendto(data, (LOCAL, port))
        await asyncio.sleep(0.2)
    decoded = receiver.frames_decoded
    await until(lambda: receiver.frames_decoded >= decoded + 2, 2, "frames after the junk")
    assert receiver.colours_seen() == "red" and receiver.frames_dropped == 0 and receiver.remote_ssrc == sender.ssrc
    assert sender.keyframe_requests_received == 0 and receiver.keyframe_requests_received == 0
    assert not loop_errors


def test_parsers_refuse_what_is_cut_short() -> None:
    packet = parse_rtp(struct.pack("!BBHII", 0x80, 0x80 | 96, 1, 2, 3) + b"\x90\x80\x81\x02\x9d")
    assert packet is not None and packet.marker and packet.payload_type == 96 and packet.ssrc == 3
    assert vp8_payload(packet.payload) == (True, b"\x9d")
    assert vp8_payload(b"\x10\x9d") == (True, b"\x9d") and vp8_payload(b"\x00\x9d") == (False, b"\x9d")
    assert vp8_payload(b"\x80\xf0\x05\x06\x07\x9d") == (False, b"\x9d")  # 7-bit PictureID, TL0PICIDX, TID
    assert vp8_payload(b"\x90\xf0\x05\x06\x07") is None
    pli = struct.pack("!BBHII", 0x81, 206, 2, 1, 2)
    assert asks_for_keyframe(struct.pack("!BBHI", 0x80, 201, 1, 1) + pli) and not asks_for_keyframe(pli + b"\x00")
    assert not asks_for_keyframe(struct.pack("!BBHII", 0x8F, 206, 2, 1, 2))  # FMT 15 (application layer)
