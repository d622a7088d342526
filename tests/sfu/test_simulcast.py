"""Simulcast from browsers: the SDP of the layers (RFC 8851, RFC 8853), a WebRTC leg routing each layer's packets
by its RTP stream id, a slot changing layer on that layer's keyframe with the numbering kept continuous, the
allocator's choice of layer, the REMB a simulcast publisher is sent, and what plain-RTP slots and repeated packets
get."""

from __future__ import annotations

import itertools
import struct
import time

from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket, RtpPacket, unpack_remb_fci

from sfu import sdp
from sfu.allocation import RAISE_HOLD, RESUME_HEADROOM, BandwidthAllocator, Demand, allocate_layers
from sfu.bandwidth import BandwidthEstimate
from sfu.forwarder import VideoSlot, VideoSource
from sfu.pacer import Pacer
from sfu.repeats import RepeatFilter
from sfu.rtprewriter import MediaPacket, Vp8Descriptor
from sfu.settings import MediaSettings
from sfu.upstream import STRAIN_HOLD, UpstreamFeedback
from sfu.webrtcleg import SIMULCAST_REMB, WebRtcLeg

from .test_forwarder import slot_with_path
from .test_rtprewriter import rtp, vp8_payload

FINGERPRINT = ":".join(["AB"] * 32)

#: each m-section's transport lines (one bundle)
TRANSPORT = [
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=ice-options:trickle",
    f"a=fingerprint:sha-256 {FINGERPRINT}",
    "a=setup:actpass",
]

#: what Chromium offers for a microphone and a camera sent with three `sendEncodings` (rid q, h, f): no a=ssrc for
#: the video, its layers named by rid
CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        *TRANSPORT,
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendrecv",
        "a=msid:stream audio",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1001 cname:camera",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        *TRANSPORT,
        "a=mid:1",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=sendrecv",
        "a=msid:stream video",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtcp-fb:96 ccm fir",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
        "",
    ]
)


def section(text: str, mid: str) -> list[str]:
    return next(part.splitlines() for part in text.split("\r\nm=")[1:] if f"a=mid:{mid}" in part.splitlines())


def rtp_bytes(
    payload: bytes, seq: int, ts: int, ssrc: int, *, pt: int = 96, marker: int = 1, extensions: dict[int, bytes]
) -> bytes:
    """An RTP packet with one-byte header extensions (RFC 8285)."""
    elements = b"".join(bytes([(number << 4) | (len(value) - 1)]) + value for number, value in extensions.items())
    elements += b"\x00" * (-len(elements) % 4)
    header = struct.pack("!BBHII", 0x90 if elements else 0x80, (marker << 7) | pt, seq, ts, ssrc)
    if elements:
        header += b"\xbe\xde" + struct.pack("!H", len(elements) // 4) + elements
    return header + payload


def vp8_keyframe(picture_id: int, width: int, height: int) -> bytes:
    """A VP8 payload starting a key frame whose header gives its size (RFC 6386 section 9.1)."""
    descriptor = bytes([0x90, 0x80]) + struct.pack("!H", 0x8000 | picture_id)
    return descriptor + b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"key-bytes"


# SDP


def test_the_offered_layers_are_read_and_the_answer_receives_them() -> None:
    assert sdp.simulcast_rids(CHROME_OFFER, "1") == ["q", "h", "f"]
    assert sdp.simulcast_rids(CHROME_OFFER, "0") == []
    # alternatives take their first, a paused stream still counts, an undeclared rid does not
    offer = CHROME_OFFER.replace("a=simulcast:send q;h;f", "a=simulcast:send f,x;~h;q;z")
    assert sdp.simulcast_rids(offer, "1") == ["f", "h", "q"]
    answer = sdp.accept_simulcast(
        "v=0\r\nm=audio 9\r\na=mid:0\r\nm=video 9\r\na=mid:1\r\na=rid:old recv\r\n", "1", ["q"]
    )
    assert answer.split("\r\n") == ["v=0", "m=audio 9", "a=mid:0", "m=video 9", "a=mid:1", "a=rid:q recv",
                                    "a=simulcast:recv q", ""]  # fmt: skip


async def test_a_leg_answers_the_layers_and_routes_each_by_its_stream_id() -> None:
    leg = WebRtcLeg("p-1", MediaSettings(host_addresses=("127.0.0.1",)), None, ("VP8",))
    try:
        answer = await leg.answer(CHROME_OFFER)
        video = section(answer, "1")
        assert [line for line in video if line.startswith(("a=rid:", "a=simulcast:"))] == [
            "a=rid:q recv",
            "a=rid:h recv",
            "a=rid:f recv",
            "a=simulcast:recv q;h;f",
        ]
        assert "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in video
        assert "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id" in video
        camera = leg.video_source
        assert camera is not None and [layer.rid for layer in camera.layers] == ["q", "h", "f"]
        assert leg.video_sources == [camera]  # one source to the room
        q, h, f = camera.layers

        # the first packets of each SSRC name its layer; later ones do not need to
        assert leg._on_transport_rtp(rtp_bytes(vp8_payload(1, key=True), 10, 0, 2001, extensions={10: b"h"}))
        assert leg._on_transport_rtp(rtp_bytes(vp8_payload(2), 11, 3000, 2001, extensions={}))
        assert leg._on_transport_rtp(rtp_bytes(vp8_payload(7, key=True), 500, 0, 2002, extensions={10: b"f"}))
        assert (h.packets, f.packets, q.packets) == (2, 1, 0)
        assert camera.packets == 3 and camera.frames == 2

        # a retransmission names the layer it repairs; one of a packet that had come is dropped, one that fills a
        # gap goes on (as the original)
        lost = rtp_bytes(vp8_payload(3), 13, 6000, 2001, extensions={})
        original_payload = lost[12:]
        rtx = rtp_bytes(struct.pack("!H", 13) + original_payload, 1, 6000, 3001, pt=97, extensions={11: b"h"})
        repeat = rtp_bytes(struct.pack("!H", 11) + vp8_payload(2), 2, 3000, 3001, pt=97, extensions={})
        assert leg._on_transport_rtp(repeat)
        assert h.packets == 2  # seen already
        assert leg._on_transport_rtp(rtx)
        assert h.packets == 3
        # a packet with no stream id on an unknown SSRC belongs to no layer yet: dropped, not taken for the camera's
        assert leg._on_transport_rtp(rtp_bytes(vp8_payload(9), 1, 0, 2999, extensions={}))
        assert camera.packets == 4
    finally:
        await leg.close()


# a slot's layer


def test_a_slot_changes_layer_on_that_layer_s_keyframe_with_continuous_numbering() -> None:
    requests: list[str] = []
    camera = VideoSource("alice", "VP8", lambda: requests.append("camera"))
    # added out of order: kept lowest first by the usual names, then by their sizes
    f = camera.add_layer("f", lambda: requests.append("f"))
    q = camera.add_layer("q", lambda: requests.append("q"))
    h = camera.add_layer("h", lambda: requests.append("h"))
    assert camera.layers == [q, h, f]
    now = time.monotonic()
    for layer, ssrc, size in ((q, 11, (320, 180)), (h, 12, (640, 360)), (f, 13, (1280, 720))):
        layer.on_packet(rtp(vp8_keyframe(100, *size), 1000, 90000, ssrc=ssrc, arrival=now - 1.0))
    assert camera.resolution == (1280, 720) and camera.layers == [q, h, f]
    assert camera.frames == 1 and camera.keyframes == 1  # each layer carries each frame; each sent one keyframe

    slot, path = slot_with_path()
    slot.assign(camera)
    assert slot.target is camera and slot.layer is q and slot.current is q  # a new slot starts low, at once
    assert len(path.rtp) == 1 and requests == []
    for step in range(1, 4):
        for layer, ssrc in ((q, 11), (h, 12), (f, 13)):
            packet = rtp(
                vp8_payload(100 + step), 1000 + step, 90000 + 3000 * step, ssrc=ssrc, arrival=now - 1 + step / 10
            )
            layer.on_packet(packet)
    assert len(path.rtp) == 4  # q's packets only

    slot.select_layer(f)  # its keyframe is a second old, with much after it: a fresh one is asked for
    assert slot.layer is f and slot.current is q and slot.target is camera and requests == ["f"]
    for layer, ssrc in ((q, 11), (h, 12), (f, 13)):
        layer.on_packet(rtp(vp8_payload(104), 1004, 102000, ssrc=ssrc, arrival=now))
    assert len(path.rtp) == 5  # still q's, until f's keyframe
    f.on_packet(rtp(vp8_keyframe(105, 1280, 720), 1005, 105000, ssrc=13, arrival=now))
    assert slot.current is f and slot.pending is None and len(path.rtp) == 6
    q.on_packet(rtp(vp8_payload(105), 1005, 105000, ssrc=11, arrival=now))
    assert len(path.rtp) == 6  # q is no longer forwarded
    f.on_packet(rtp(vp8_payload(106), 1006, 108000, ssrc=13, arrival=now))
    sent = [RtpPacket.parse(data) for data in path.rtp]
    sequences = [packet.sequence_number for packet in sent]
    assert all(b == (a + 1) & 0xFFFF for a, b in itertools.pairwise(sequences)), sequences
    timestamps = [packet.timestamp for packet in sent]
    assert all(0 < (b - a) & 0xFFFFFFFF < 0x80000000 for a, b in itertools.pairwise(timestamps))
    pictures = [Vp8Descriptor(packet.payload).picture_id for packet in sent]
    assert all(b == (a + 1) & 0x7FFF for a, b in itertools.pairwise(pictures)), pictures
    assert {packet.ssrc for packet in sent} == {1}  # one stream to the subscriber

    slot.on_keyframe_request()  # the subscriber's PLI goes to the layer it is shown
    assert requests[-1] == "f"
    slot.select_layer(q)  # down: q's keyframe is old, so one is asked for
    assert requests[-1] == "q" and slot.lowered_at > 0


def test_a_phone_s_slot_gets_the_layer_of_360_lines() -> None:
    camera = VideoSource("alice", "VP8", lambda: None)
    layers = [camera.add_layer(rid, lambda: None) for rid in ("q", "h", "f")]
    assert camera.suited_layer() is layers[1]  # sizes unknown: the one above the lowest
    now = time.monotonic()
    for index, (layer, size) in enumerate(zip(layers, ((320, 180), (480, 270), (1280, 720)), strict=True)):
        layer.on_packet(rtp(vp8_keyframe(1, *size), 1, 0, ssrc=index + 1, arrival=now))
    assert camera.suited_layer() is layers[2]  # 270 lines are too few
    phone = VideoSlot(0, None, "VP8")
    phone.active, phone.adaptive = True, False
    phone.assign(camera)
    assert phone.layer is layers[2]
    single = VideoSource("bob", "VP8", lambda: None)
    assert single.renditions == [single] and single.suited_layer() is single


# the allocator's choice


def test_each_slot_gets_its_lowest_layer_first_then_the_largest_that_fits_in_order() -> None:
    layers = [(500_000, 0.0), (1_500_000, 0.0)]
    speaker = Demand("speaker", 150_000, upper=layers, layer=None)
    thumbnail = Demand("thumbnail", 150_000, upper=layers, layer=None)
    # a first choice is made on the estimate alone: the speaker's first, then what is left
    assert allocate_layers(2_200_000, [speaker, thumbnail], 100.0) == {"speaker": 2, "thumbnail": 1}
    assert allocate_layers(1_200_000, [speaker, thumbnail], 100.0) == {"speaker": 1, "thumbnail": 1}
    assert allocate_layers(500_000, [speaker, thumbnail], 100.0) == {"speaker": 0, "thumbnail": 0}
    # paused only when even the lowest layer does not fit
    assert allocate_layers(200_000, [speaker, thumbnail], 100.0) == {"speaker": 0, "thumbnail": None}
    # down at once; up only within what was proven, with headroom, and not right after going down
    shown = Demand("speaker", 150_000, upper=layers, layer=2, lowered_at=0.0)
    assert allocate_layers(1_000_000, [shown], 100.0) == {"speaker": 1}
    low = Demand("speaker", 150_000, upper=layers, layer=0, lowered_at=99.0)
    assert allocate_layers(5_000_000, [low], 100.0) == {"speaker": 0}  # too soon after going down
    assert allocate_layers(5_000_000, [low], 99.0 + RAISE_HOLD, proven=400_000) == {"speaker": 0}
    assert allocate_layers(5_000_000, [low], 99.0 + RAISE_HOLD, proven=500_000 * RESUME_HEADROOM) == {"speaker": 1}
    assert allocate_layers(5_000_000, [low], 99.0 + RAISE_HOLD) == {"speaker": 2}


def test_the_allocator_measures_each_layer_and_moves_the_slot_between_them() -> None:
    camera = VideoSource("alice", "VP8", lambda: None)
    layers = [camera.add_layer(rid, lambda: None) for rid in ("q", "h", "f")]
    slot, _ = slot_with_path()
    slot.assign(camera)
    allocator = BandwidthAllocator()
    pacer = Pacer(BandwidthEstimate(3_000_000))
    start = time.monotonic()
    # what each layer carries, measured (overhead included): about 150 kbit/s, 500 kbit/s and 1.5 Mbit/s
    per_second = {layers[0]: (15_000, 20), layers[1]: (55_000, 60), layers[2]: (180_000, 150)}
    for step in range(3):
        now = start + step
        for layer, (octets, packets) in per_second.items():
            layer.octets += octets
            layer.packets += packets
            layer.last_arrival = now
        allocator.measure([camera], now)
        pacer.bytes_sent += 250_000
        allocator.apply(pacer, [slot], now)
    assert [round(allocator.source_bitrate(layer) / 1000) for layer in layers] == [130, 469, 1512]
    assert slot.layer is layers[2] and slot.layer_rank == 2 and not slot.paused
    pacer.estimate.bitrate = 700_000  # congestion: down at once
    allocator.apply(pacer, [slot], start + 3)
    assert slot.layer is layers[1]
    layers[0].last_arrival = layers[1].last_arrival = start + 3
    layers[2].last_arrival = -1e9  # the publisher stopped sending its top layer: it is no longer offered
    pacer.estimate.bitrate = 5_000_000
    assert allocator._layer_options(slot, start + 3) == layers[:2]


# upstream


def test_a_simulcast_publisher_gets_remb_for_all_his_layers_until_his_link_is_strained() -> None:
    sent: list[bytes] = []

    def send(data: bytes) -> bool:
        sent.append(data)
        return True

    upstream = UpstreamFeedback(send, 5, 2, remb_floor=SIMULCAST_REMB)

    def rembs() -> list[int]:
        found = []
        for data in sent:
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                    found.append(unpack_remb_fci(packet.fci)[0])
        return found

    start = time.monotonic()
    sequence = 0

    def receive(first_ms: int, last_ms: int, lose_every: int = 0) -> None:
        """100 packets a second of 1,000 bytes (about 800 kbit/s), on time; every `lose_every`-th lost."""
        nonlocal sequence
        for millisecond in range(first_ms, last_ms, 10):
            now = start + millisecond / 1000
            sequence += 1
            if lose_every and sequence % lose_every == 0:
                continue
            stamp = (int(now * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")
            packet = MediaPacket.parse(
                rtp_bytes(b"\x00" * 1000, sequence, millisecond * 90, 77, extensions={2: stamp}), "", now
            )
            assert packet is not None
            upstream.on_packet(packet)

    receive(0, 500)
    upstream.floor_remb(start + 0.5)  # the estimator says nothing for its first seconds: the floor goes out alone
    assert rembs() == [SIMULCAST_REMB]
    upstream.floor_remb(start + 0.6)
    assert len(rembs()) == 1  # not again so soon
    receive(500, 5000)
    assert len(rembs()) > 2 and min(rembs()) >= SIMULCAST_REMB  # the estimator alone says 1.5 times 800 kbit/s
    # a tenth of his packets lost: his link is strained, the estimator's word alone goes out, and the floor is not
    # sent on its own either
    sent.clear()
    receive(5000, 8000, lose_every=10)
    assert upstream.strained_at > start
    assert rembs() and rembs()[-1] < SIMULCAST_REMB and upstream.remb == rembs()[-1]
    sent.clear()
    upstream.floor_remb(start + 9)
    assert rembs() == [] and start + 8 - upstream.strained_at < STRAIN_HOLD


def test_a_packet_seen_again_is_a_repeat() -> None:
    repeats = RepeatFilter()
    assert not repeats.repeated(1, 10) and not repeats.repeated(1, 11) and not repeats.repeated(2, 10)
    assert repeats.repeated(1, 10) and repeats.repeated(2, 10)
    assert not repeats.repeated(1, 10 + 65536 // 2)  # far on: not the same packet
