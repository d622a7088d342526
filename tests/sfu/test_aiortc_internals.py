"""Fails loudly when an aiortc/aioice upgrade changes a private name sfu/aiortc_adapter.py relies on.

Each check names what the adapter borrows; if one fails, re-read the new aiortc source before touching the pin.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
from importlib.metadata import version

import aioice
import aioice.ice
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
    rtcdtlstransport,
    rtcrtpreceiver,
    rtcrtpsender,
)

from sfu import aiortc_adapter
from sfu.codecs import is_keyframe

from .clients import ColourTrack


def test_pinned_versions() -> None:
    assert version("aiortc") == "1.16.0", "aiortc changed: re-check sfu/aiortc_adapter.py against its source"
    assert version("aioice") == "0.13.0", "aioice changed: re-check sfu/aiortc_adapter.py against its source"


async def test_receiver_private_names() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        assert isinstance(receiver._RTCRtpReceiver__decoder_queue, queue.Queue)
        assert receiver._RTCRtpReceiver__decoder_thread is None
        assert list(inspect.signature(receiver._handle_rtp_packet).parameters) == ["packet", "arrival_time_ms"]
        assert list(inspect.signature(receiver._send_rtcp_pli).parameters) == ["media_ssrc"]
        assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
        # the decoder thread is fed from that queue with (codec, JitterFrame) and stopped by None
        worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
        assert "input_q.get()" in worker and "if task is None" in worker and "codec, encoded_frame = task" in worker
        handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
        assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
        assert "self.__decoder_thread" in inspect.getsource(RTCRtpReceiver.receive)
        # the DTLS transport routes packets with this call
        assert "receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in inspect.getsource(
            rtcdtlstransport.RTCDtlsTransport._handle_rtp_data
        )
    finally:
        await pc.close()


async def test_sender_private_names() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        assert isinstance(sender._stream_id, str)
        assert callable(sender._send_keyframe)
        # PLI and FIR from the remote peer end up in _send_keyframe
        rtcp = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
        assert "RTCP_PSFB_PLI" in rtcp and "RTCP_PSFB_FIR" in rtcp and "self._send_keyframe()" in rtcp
        # anything but a Frame is packed, not encoded: the door for encoded passthrough
        nxt = inspect.getsource(RTCRtpSender._next_encoded_frame)
        assert "isinstance(data, Frame)" in nxt and "self.__encoder.pack(data)" in nxt
        assert "self.__rtp_history" in inspect.getsource(RTCRtpSender._retransmit)  # NACKs answered from history
        assert "_stream_id" in inspect.getsource(rtcrtpsender)
    finally:
        await pc.close()


async def test_ice_private_names() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio")
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        connection = gatherer._connection
        assert isinstance(connection, aioice.Connection)
        assert isinstance(connection._protocols, list)
        assert list(inspect.signature(connection.get_component_candidates).parameters) == [
            "component",
            "addresses",
            "timeout",
        ]
        assert "self.get_component_candidates(" in inspect.getsource(aioice.Connection.gather_candidates)
        assert "StunProtocol" in dir(aioice.ice)
        assert list(inspect.signature(aioice.ice.StunProtocol).parameters) == ["receiver"]
    finally:
        await pc.close()


async def test_adapter_end_to_end_on_loopback() -> None:
    """Loopback candidates, the encoded-frame tap, and a PLI to the publisher's primary SSRC."""
    publisher, subscriber = RTCPeerConnection(), RTCPeerConnection()
    keyframe_requests: list[int] = []
    frames: list[tuple[str, bool]] = []
    try:
        sender = publisher.addTrack(ColourTrack("red"))
        aiortc_adapter.on_keyframe_request(sender, lambda: keyframe_requests.append(1))
        aiortc_adapter.gather_host_candidates(publisher, ["127.0.0.1"], None)
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = publisher.localDescription.sdp
        assert "127.0.0.1" in offer

        await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        receiver = subscriber.getTransceivers()[0].receiver
        aiortc_adapter.tap_encoded_frames(
            receiver, lambda codec, frame: frames.append((codec.name, is_keyframe(codec.name, frame.data)))
        )
        aiortc_adapter.gather_host_candidates(subscriber, ["127.0.0.1"], None)
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)
        for _ in range(100):
            if len(frames) >= 3:
                break
            await asyncio.sleep(0.05)
        assert frames and frames[0] == ("VP8", True), frames[:3]
        assert receiver._RTCRtpReceiver__decoder_thread is not None  # started, idle

        await aiortc_adapter.send_pli(receiver, sender._ssrc)
        for _ in range(40):
            if keyframe_requests:
                break
            await asyncio.sleep(0.05)
        assert keyframe_requests
    finally:
        await subscriber.close()
        await publisher.close()


async def test_reoffer_keeps_negotiated_numbers() -> None:
    """create_reoffer lends createOffer the negotiated tables: it must read them from its module, synchronously,
    and keep each transceiver's _codecs and _headerExtensions."""
    from aiortc import rtcpeerconnection

    assert "CODECS" in vars(rtcpeerconnection) and "HEADER_EXTENSIONS" in vars(rtcpeerconnection)
    assert "await" not in inspect.getsource(rtcpeerconnection.RTCPeerConnection.createOffer)
    caller, callee = RTCPeerConnection(), RTCPeerConnection()
    try:
        caller.addTransceiver("audio")
        offer = await caller.createOffer()
        # A browser numbers things its own way: opus at 111, audio level at extension 1, mid at 4.
        text = offer.sdp.replace("opus/48000/2", "opus/48000/2").replace(" 96 ", " 111 ").replace(":96 ", ":111 ")
        text = text.replace(
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid"
        )
        text = text.replace(
            "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        )
        await callee.setRemoteDescription(RTCSessionDescription(sdp=text, type="offer"))
        await callee.setLocalDescription(await callee.createAnswer())
        transceiver = callee.getTransceivers()[0]
        assert transceiver._codecs[0].payloadType == 111
        assert {ext.uri: ext.id for ext in transceiver._headerExtensions}["urn:ietf:params:rtp-hdrext:sdes:mid"] == 4
        callee.addTransceiver("video", direction="sendonly")
        reoffer = (await aiortc_adapter.create_reoffer(callee)).sdp
        assert "a=rtpmap:111 opus/48000/2" in reoffer
        assert reoffer.count("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid") == 2  # audio and the new video
        assert "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid" not in reoffer
        assert transceiver._codecs[0].payloadType == 111
    finally:
        await caller.close()
        await callee.close()


def test_fast_clock_agrees_with_aiortcs() -> None:
    from aiortc import clock

    assert {"current_ntp_time", "current_ms", "current_datetime", "datetime_to_ntp"} <= set(dir(clock))
    aiortc_adapter.use_fast_clock()
    reference_ntp = clock.datetime_to_ntp(clock.current_datetime())
    reference_ms = int((clock.current_datetime() - clock.NTP_EPOCH).total_seconds() * 1000)
    assert abs(clock.current_ntp_time() - reference_ntp) < (1 << 32) // 100  # within 10 ms
    assert abs(clock.current_ms() - reference_ms) < 10
    # the sender and the DTLS transport call them through the module, so the replacement reaches them
    assert "clock.current_ntp_time()" in inspect.getsource(rtcrtpsender.RTCRtpSender._run_rtp)
    assert "clock.current_ms()" in inspect.getsource(rtcdtlstransport.RTCDtlsTransport._recv_next)
