"""Video on plain-RTP legs: frame reassembly, RTCP keyframe requests, and what a leg accepts of a ConfBridge-like
offer (one stream to send on, streams to receive, the rest refused), through re-offers."""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc.rtp import RtpPacket

from sfu import SFU, RoomOptions
from sfu.ports import PortAllocator, PortRangeExhausted
from sfu.rtpleg import RtpLeg
from sfu.rtpvideo import RtpVideoStream, VideoCodec, asks_keyframe, keyframe_request
from sfu.settings import MediaSettings
from tests.waiting import until

from .clients import RtpPhone, WebRtcClient
from .rtpvideo import RtpVideoPeer
from .test_rtpleg import phone_offer

VP8 = VideoCodec("VP8", 96)
#: a VP8 key frame's first bytes (frame tag with the key frame bit clear, start code) and a delta frame's
KEY = b"\x10\x02\x00\x9d\x01\x2a" + b"k" * 40
DELTA = b"\x11\x02\x00" + b"d" * 40


def vp8_packets(frame: bytes, seq: int, timestamp: int, size: int = 16) -> list[RtpPacket]:
    """RFC 7741 packets of one frame: the S bit on the first, the marker on the last."""
    chunks = [frame[i : i + size] for i in range(0, len(frame), size)]
    packets = []
    for index, chunk in enumerate(chunks):
        descriptor = b"\x10" if index == 0 else b"\x00"
        packets.append(
            RtpPacket(
                payload_type=96,
                marker=int(index == len(chunks) - 1),
                sequence_number=(seq + index) & 0xFFFF,
                timestamp=timestamp,
                payload=descriptor + chunk,
            )
        )
    return packets


def test_keyframe_requests_are_well_formed_and_malformed_rtcp_asks_nothing() -> None:
    packet = keyframe_request(0x11111111, 0x22222222, 7)
    assert asks_keyframe(packet)
    # receiver report (8 bytes), PLI (12), FIR (20): lengths in 32-bit words minus one
    assert len(packet) == 40
    assert struct.unpack_from("!BBH", packet, 8) == (0x81, 206, 2)
    assert struct.unpack_from("!BBH", packet, 20) == (0x84, 206, 4)
    assert struct.unpack_from("!IB", packet, 32) == (0x22222222, 7)
    assert asks_keyframe(struct.pack("!BBHI", 0x80, 192, 1, 5))  # RFC 2032 FIR
    sender_report_only = struct.pack("!BBHI", 0x80, 200, 1, 5)
    for data in (b"", b"\x80", b"\x00" * 40, sender_report_only, packet[:3], b"\xff" * 13):
        assert not asks_keyframe(data)


def confbridge_offer(*video: str) -> str:
    """Audio, then the given video m-lines (ConfBridge's SFU re-INVITE shape)."""
    return phone_offer("m=audio 5000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv", *video)


def video_lines(answer: str) -> list[str]:
    return [line for line in answer.split("\r\n") if line.startswith("m=video")]


def sections(answer: str) -> list[str]:
    return answer.split("\r\nm=")[1:]


async def test_leg_sends_on_one_stream_receives_up_to_the_limit_and_refuses_the_rest(settings: MediaSettings) -> None:
    leg = RtpLeg("bridge", settings, None, ("VP8", "H264"), max_received_video=2)
    own = ["m=video 6000 RTP/AVP 96", "a=rtpmap:96 VP8/90000", "a=sendrecv"]
    source = ["RTP/AVP 96", "a=rtpmap:96 VP8/90000", "a=sendonly"]
    try:
        answer = await leg.answer(
            confbridge_offer(
                *own,
                f"m=video 6010 {source[0]}",
                *source[1:],
                "m=video 6020 RTP/AVP 97",
                "a=rtpmap:97 H264/90000",
                "a=fmtp:97 profile-level-id=42e01f;packetization-mode=1",
                "a=sendonly",
                f"m=video 6030 {source[0]}",  # over the limit of 2 received streams
                *source[1:],
                "m=video 6040 RTP/AVP 98",
                "a=rtpmap:98 H264/90000",  # packetization mode 0: not forwardable
                "a=sendonly",
                "m=video 6050 RTP/AVP 99",
                "a=rtpmap:99 AV1/90000",
                "a=sendonly",
                "m=video 0 RTP/AVP 96",  # a stream that left
                "a=rtpmap:96 VP8/90000",
                "m=video 6070 RTP/SAVP 96",  # encrypted plain RTP: not ours
                "a=rtpmap:96 VP8/90000",
            )
        )
        lines = video_lines(answer)
        assert len(lines) == 8, "every m-line answered in its place"
        parts = sections(answer)
        # the member's own stream: we send the speaker on it, and take what comes on it (not counted)
        assert lines[0].startswith("m=video ") and lines[0].endswith(" RTP/AVP 96") and "a=sendrecv" in parts[1]
        assert "a=recvonly" in parts[2] and "a=rtpmap:96 VP8/90000" in parts[2]
        assert lines[2].endswith(" RTP/AVP 97") and "packetization-mode=1" in parts[3] and "a=recvonly" in parts[3]
        assert [line.split()[1] for line in lines[3:]] == ["0"] * 5
        ports = [int(line.split()[1]) for line in lines[:3]]
        assert all(port % 2 == 0 and f"a=rtcp:{port + 1}" in answer for port in ports)
        assert [index for index, stream in leg.video_streams.items() if stream.sends] == [1]
        assert len(leg.slots) == 1 and leg.slots[0].codec_name == "VP8"
        assert [s.codec_name for s in leg.video_sources] == ["VP8", "VP8", "H264"]

        # ConfBridge re-INVITEs when a source leaves: its m-line keeps its place with port 0
        reanswer = await leg.answer(
            confbridge_offer(
                *own,
                "m=video 0 RTP/AVP 96",
                "a=rtpmap:96 VP8/90000",
                "m=video 6020 RTP/AVP 97",
                "a=rtpmap:97 H264/90000",
                "a=fmtp:97 profile-level-id=42e01f;packetization-mode=1",
                "a=sendonly",
                f"m=video 6030 {source[0]}",  # now under the limit: taken
                *source[1:],
            )
        )
        again = video_lines(reanswer)
        assert again[0] == lines[0] and again[1].split()[1] == "0" and again[2] == lines[2]
        assert again[3].split()[1] != "0"
        assert sorted(leg.video_streams) == [1, 3, 4] and len(leg.video_sources) == 3

        # the member's own stream refused: the speaker goes out on no stream, nothing else changes
        audio_only = await leg.answer(confbridge_offer("m=video 0 RTP/AVP 96", "a=rtpmap:96 VP8/90000"))
        assert video_lines(audio_only) == ["m=video 0 RTP/AVP 96"] and not leg.slots and not leg.video_streams
    finally:
        await leg.close()
    assert not leg.video_streams


async def test_a_peer_that_only_receives_gets_the_speaker_and_an_audio_only_room_refuses_video(sfu: SFU) -> None:
    room = sfu.room("video-phone", RoomOptions())
    offer = confbridge_offer("m=video 6000 RTP/AVPF 96", "a=rtpmap:96 VP8/90000", "a=rtcp-mux", "a=recvonly")
    participant, answer = await room.join_rtp(offer)
    assert "a=sendonly" in sections(answer)[1] and "a=rtcp-mux" in answer and "a=rtcp:" not in answer
    assert len(participant.slots) == 1 and participant.video_sources == []

    quiet = sfu.room("audio-only", RoomOptions(video=False))
    other, answer = await quiet.join_rtp(offer)
    assert video_lines(answer) == ["m=video 0 RTP/AVPF 96"] and not other.slots


async def test_outbound_offer_has_one_sendrecv_video_stream_and_the_answer_settles_it(sfu: SFU) -> None:
    room = sfu.room("outbound-video", RoomOptions(video_codecs=("VP8", "H264")))
    participant, offer = await room.join_rtp_outbound()
    leg = participant.leg
    assert isinstance(leg, RtpLeg)
    (video,) = video_lines(offer)
    port = int(video.split()[1])
    assert video.endswith(" RTP/AVP 96 97") and f"a=rtcp:{port + 1}" in offer and "packetization-mode=1" in offer
    await leg.accept_answer(
        confbridge_offer(
            "m=video 7000 RTP/AVP 97 96",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 packetization-mode=1",
            "a=sendrecv",
        )
    )
    stream = leg.video_streams[1]
    assert stream.codec == VideoCodec("H264", 97), "the answerer's first format"
    assert stream.sends and stream.receives and stream.remote == ("127.0.0.1", 7000)
    assert stream.remote_rtcp == ("127.0.0.1", 7001)

    other, offer = await room.join_rtp_outbound()
    assert isinstance(other.leg, RtpLeg)
    await other.leg.accept_answer(confbridge_offer("m=video 0 RTP/AVP 96", "a=rtpmap:96 VP8/90000"))
    assert not other.leg.video_streams and other.leg.audio_codec is not None


def media_section(answer: str, index: int) -> tuple[int, str]:
    """The port and the text of the answer's m-line number `index` (0: audio)."""
    text = sections(answer)[index]
    return int(text.split()[1]), text


async def test_a_video_phone_and_a_browser_see_each_other_and_keyframe_requests_cross(sfu: SFU) -> None:
    room = sfu.room("video-phone-media", RoomOptions(last_n=2))
    browser = WebRtcClient("A", None, "red")
    phone, camera = RtpPhone(None), RtpVideoPeer("blue")
    camera.max_packet = 40  # its frames in several packets, for the gateway to put back together
    await phone.open()
    await camera.open()
    try:
        await browser.join(room)
        offer = phone_offer(
            f"m=audio {phone.port} RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            f"m=video {camera.port} RTP/AVP 96",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:* ccm fir",
            "a=sendrecv",
        )
        participant, answer = await room.join_rtp(offer)
        await browser.accept_slots()  # a slot for the phone's video
        port, section = media_section(answer, 1)
        assert "a=sendrecv" in section
        camera.start(("127.0.0.1", port))
        await until(lambda: browser.colours_seen() == {"blue"}, 8)
        await until(lambda: camera.colours_seen() == "red", 8)
        stream = participant.leg.video_streams[1]  # type: ignore[attr-defined]
        assert stream.packets_received > 2 * camera.frames_sent - 10 and stream.losses == 0

        # the phone asks for a keyframe (RTCP PLI+FIR): it reaches the browser it is shown, which sends one
        source = browser.participant.video_source if browser.participant else None
        assert source is not None
        requests, keyframes = source.keyframe_requests, source.keyframes
        await asyncio.sleep(0.6)  # keyframe requests upstream are rate-limited
        camera.request_keyframe()
        await until(lambda: source.keyframe_requests > requests and source.keyframes > keyframes, 5)

        # the gateway asks the phone for one (a new subscriber's slot would): RTCP to port+1, answered
        phone_source = participant.video_source
        assert phone_source is not None and phone_source.frames > 0
        asked = camera.keyframe_requests_received
        await asyncio.sleep(0.6)  # keyframe requests upstream are rate-limited (one per source per 500 ms)
        phone_source.request_keyframe()
        await until(lambda: camera.keyframe_requests_received > asked, 3)
        await until(lambda: camera.keyframes_sent >= 2, 3)
    finally:
        await browser.close()
        await phone.close()
        await camera.close()


async def test_several_streams_from_one_peer_fill_a_browser_s_slots_and_an_idle_stream_takes_none(sfu: SFU) -> None:
    """ConfBridge in SFU mode: the member's own stream (nothing comes on it) and one stream per source."""
    room = sfu.room("confbridge-media", RoomOptions(last_n=3))
    browser = WebRtcClient("A", None, "red")
    phone = RtpPhone(None)
    own, green, yellow = RtpVideoPeer(None), RtpVideoPeer("green"), RtpVideoPeer("yellow")
    peers = [own, green, yellow]
    await phone.open()
    for peer in peers:
        await peer.open()
    try:
        await browser.join(room)
        video = []
        for peer, direction in zip(peers, ("sendrecv", "sendonly", "sendonly"), strict=True):
            video += [f"m=video {peer.port} RTP/AVP 96", "a=rtpmap:96 VP8/90000", f"a={direction}"]
        offer = phone_offer(f"m=audio {phone.port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000", *video)
        participant, answer = await room.join_rtp(offer)
        await browser.accept_slots()  # a slot per stream of the ConfBridge
        for index, peer in enumerate(peers, start=1):
            peer.start(("127.0.0.1", media_section(answer, index)[0]))
        await until(lambda: browser.colours_seen() == {"green", "yellow"}, 8)
        assert len(participant.video_sources) == 3
        shown = [slot.target for slot in browser.participant.slots] if browser.participant else []
        assert participant.video_sources[0] not in shown, "the stream nothing comes on is not shown"
        await until(lambda: own.colours_seen() == "red", 8)
        assert green.frames_decoded == 0 and yellow.frames_decoded == 0, "sources get nothing back"
    finally:
        await browser.close()
        await phone.close()
        for peer in peers:
            await peer.close()


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)


async def test_a_gap_from_a_phone_asks_it_for_a_keyframe_at_once_and_packets_go_on_as_they_come(
    settings: MediaSettings,
) -> None:
    loop = asyncio.get_running_loop()
    rtp, _ = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    rtcp_transport, rtcp = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    stream = RtpVideoStream("phone", "127.0.0.1", None)
    await stream.open()
    try:
        rtcp_port = rtcp_transport.get_extra_info("sockname")[1]
        stream.configure(
            VP8, send=False, receive=True, remote=("127.0.0.1", 9), remote_rtcp=("127.0.0.1", rtcp_port), rtcp_mux=False
        )
        source = stream.source
        assert source is not None
        received: list[int] = []
        source.on_packet = lambda packet: received.append(packet.sequence)  # type: ignore[method-assign]
        target = ("127.0.0.1", stream.local_port)

        def send(packets: list[RtpPacket]) -> None:
            for packet in packets:
                rtp.sendto(packet.serialize(), target)

        send(vp8_packets(KEY, 1, 3000))  # held until the sender has sent 4 packets in sequence, then all passed on
        lossy = vp8_packets(DELTA, 4, 6000)
        send(lossy[:1] + lossy[2:])
        await until(lambda: stream.losses == 1 and bool(rcvd(rtcp)), 2)
        assert asks_keyframe(rcvd(rtcp)[0])
        # a new sender (a restarted phone) starts its numbering afresh: not a loss
        restarted = vp8_packets(KEY, 40000, 5)
        for packet in restarted:
            packet.ssrc = 7
        send(restarted)
        # another address sending in sequence while the sender sends is not taken for it (plain RTP is not
        # authenticated: the picture and the symmetric-RTP latch are not anyone's for the asking)
        intruder, _ = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
        for packet in vp8_packets(KEY * 4, 30000, 1):
            packet.ssrc = 99
            intruder.sendto(packet.serialize(), target)
        intruder.close()
        # garbage on both ports is ignored
        rtp.sendto(b"\x80\x60garbage", target)
        rtp.sendto(b"\x90\x60" + b"\x00" * 10, target)  # an extension header cut off
        rtp.sendto(b"\xff" * 3, ("127.0.0.1", stream.local_port + 1))
        send(vp8_packets(DELTA, 40003, 3005))
        await until(lambda: received[-1:] == [40005], 2)
        assert received == [1, 2, 3, 4, 6, 40000, 40001, 40002, 40003, 40004, 40005] and stream.losses == 1
        assert stream.remote == rtp.get_extra_info("sockname")
    finally:
        await stream.close()
        rtp.close()
        rtcp_transport.close()


def rcvd(sink: _Sink) -> list[bytes]:
    return sink.received


async def test_only_formats_the_m_line_lists_are_taken(settings: MediaSettings) -> None:
    leg = RtpLeg("phone", settings, None, ("VP8", "H264"), max_received_video=1)
    try:
        # VP8 has an rtpmap but is not in the format list; H.264 is, in packetization mode 0 only
        answer = await leg.answer(
            confbridge_offer("m=video 6000 RTP/AVP 97", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 H264/90000", "a=sendrecv")
        )
        assert video_lines(answer) == ["m=video 0 RTP/AVP 97"] and not leg.video_streams
    finally:
        await leg.close()


def test_rtp_and_rtcp_ports_of_a_pair_both_stay_in_the_configured_range() -> None:
    allocator = PortAllocator(31002, 31004)  # 31004 is even, but 31005 is out of range
    for _ in range(8):
        rtp, rtcp = allocator.bind_pair("127.0.0.1")
        assert (rtp.getsockname()[1], rtcp.getsockname()[1]) == (31002, 31003)
        rtp.close()
        rtcp.close()
    held = allocator.bind_pair("127.0.0.1")
    try:
        with pytest.raises(PortRangeExhausted):
            allocator.bind_pair("127.0.0.1")
    finally:
        for sock in held:
            sock.close()
