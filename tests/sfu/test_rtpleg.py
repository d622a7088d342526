"""Plain-RTP SDP negotiation: answers to phones, outbound offers, re-offers that never fail the call."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from sfu import SFU, RoomOptions, SdpError
from sfu.dtmf import DtmfReceiver
from sfu.rtpleg import RtpLeg
from sfu.settings import MediaSettings
from tests.waiting import until


def phone_offer(*media: str) -> str:
    head = ["v=0", "o=phone 7 7 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    return "\r\n".join([*head, *media]) + "\r\n"


async def test_answer_prefers_g722_and_keeps_m_line_order(settings: MediaSettings) -> None:
    leg = RtpLeg("p1", settings, None)
    try:
        answer = await leg.answer(
            phone_offer(
                "m=video 5004 RTP/AVP 96",
                "a=rtpmap:96 H264/90000",
                "m=audio 5000 RTP/AVP 0 8 9 101",
                "a=rtpmap:101 telephone-event/8000",
            )
        )
        lines = answer.split("\r\n")
        media = [line for line in lines if line.startswith("m=")]
        assert media[0] == "m=video 0 RTP/AVP 96"
        assert media[1] == f"m=audio {leg.local_port} RTP/AVP 9 101"
        assert "a=rtpmap:9 G722/8000" in lines and "a=sendrecv" in lines
        assert leg.audio_codec is not None and leg.audio_codec.name == "G722"
        assert leg.remote == ("127.0.0.1", 5000) and leg.telephone_event == 101
    finally:
        await leg.close()


async def test_hold_and_no_usable_audio(settings: MediaSettings) -> None:
    leg = RtpLeg("p2", settings, None)
    try:
        with pytest.raises(SdpError):
            await leg.answer(phone_offer("m=audio 5000 RTP/AVP 18", "a=rtpmap:18 G729/8000"))
        await leg.answer(phone_offer("m=audio 5000 RTP/AVP 0"))
        answer = await leg.handle_offer(phone_offer("m=audio 5000 RTP/AVP 0", "a=sendonly"))
        assert "a=recvonly" in answer and leg.direction == "recvonly"
        # a re-offer the leg cannot use keeps the call: the stream is refused, the negotiated audio stays
        answer = await leg.handle_offer(phone_offer("m=audio 5000 RTP/AVP 18", "a=rtpmap:18 G729/8000"))
        assert "m=audio 0 RTP/AVP 18" in answer and leg.audio_codec is not None
    finally:
        await leg.close()


async def test_each_packet_is_stamped_and_the_direction_says_whether_the_peer_sends(settings: MediaSettings) -> None:
    """What a watcher of a silent peer reads: the last packet's time, and whether the peer is meant to send."""
    leg = RtpLeg("p4", settings, None)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    port = phone.getsockname()[1]
    try:
        await leg.answer(phone_offer(f"m=audio {port} RTP/AVP 0"))
        assert leg.receives_audio and leg.last_received_at is None
        sent = time.monotonic()
        phone.sendto(struct.pack("!BBHII", 0x80, 0, 1, 160, 42) + bytes(160), ("127.0.0.1", leg.local_port))
        await until(lambda: leg.last_received_at is not None, 5, "the packet to be stamped")
        assert leg.last_received_at is not None and leg.last_received_at >= sent
        for direction, peer_sends in (("sendonly", True), ("recvonly", False), ("inactive", False)):
            await leg.handle_offer(phone_offer(f"m=audio {port} RTP/AVP 0", f"a={direction}"))
            assert leg.receives_audio is peer_sends, direction
    finally:
        phone.close()
        await leg.close()


async def test_outbound_offer_and_answer(sfu: SFU) -> None:
    room = sfu.room("outbound", RoomOptions())
    participant, offer = await room.join_rtp_outbound({"name": "asterisk"})
    assert "m=audio" in offer and "opus/48000/2" in offer and "telephone-event/8000" in offer
    leg = participant.leg
    assert isinstance(leg, RtpLeg) and leg.audio_codec is None
    await leg.accept_answer(phone_offer("m=audio 6000 RTP/AVP 8 101", "a=rtpmap:101 telephone-event/8000"))
    assert leg.audio_codec is not None and leg.audio_codec.name == "PCMA" and leg.remote == ("127.0.0.1", 6000)


async def test_public_address_is_announced(sfu: SFU) -> None:
    settings = MediaSettings(
        host_addresses=("127.0.0.1",), public_address="203.0.113.7", rtp_port_min=32000, rtp_port_max=32010
    )
    leg = RtpLeg("p3", settings, None)
    try:
        answer = await leg.answer(phone_offer("m=audio 5000 RTP/AVP 0"))
        assert "c=IN IP4 203.0.113.7" in answer and "127.0.0.1" not in answer
    finally:
        await leg.close()


def test_dtmf_digit_reported_once_per_event() -> None:
    receiver = DtmfReceiver()
    assert receiver.feed(bytes([1, 10, 0, 160]), 1000) is None  # not ended yet
    assert receiver.feed(bytes([1, 0x80 | 10, 2, 128]), 1000) == "1"
    assert receiver.feed(bytes([1, 0x80 | 10, 2, 128]), 1000) is None  # retransmitted end
    assert receiver.feed(bytes([11, 0x80 | 10, 2, 128]), 2000) == "#"


async def test_an_fmtp_for_a_static_payload_type_without_rtpmap_is_no_reason_to_refuse(
    settings: MediaSettings,
) -> None:
    """linphone 5.1's offer (its attributes as sent): `a=fmtp:18 annexb=yes` has no rtpmap for 18."""
    leg = RtpLeg("p3", settings, None)
    try:
        answer = await leg.answer(
            phone_offer(
                "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
                "m=audio 44529 RTP/AVP 96 97 98 0 8 18 99 100 101",
                "a=rtpmap:96 opus/48000/2",
                "a=fmtp:96 useinbandfec=1",
                "a=rtpmap:97 speex/16000",
                "a=fmtp:97 vbr=on",
                "a=rtpmap:98 speex/8000",
                "a=fmtp:98 vbr=on",
                "a=fmtp:18 annexb=yes",
                "a=rtpmap:99 telephone-event/48000",
                "a=rtpmap:100 telephone-event/16000",
                "a=rtpmap:101 telephone-event/8000",
                "a=rtcp:58776",
                "a=rtcp-fb:* trr-int 1000",
                "a=rtcp-fb:* ccm tmmbr",
            )
        )
        assert leg.audio_codec is not None and leg.remote == ("127.0.0.1", 44529)
        assert answer.startswith("v=0") and "m=audio 0 " not in answer
    finally:
        await leg.close()
