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
import aioice.stun
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
    rtcdtlstransport,
    rtcicetransport,
    rtcpeerconnection,
    rtcrtpreceiver,
    rtcrtpsender,
)
from aiortc.rtp import RtpPacket

from sfu import aiortc_adapter
from sfu.rtprewriter import MediaPacket
from sfu.rtpvideo import keyframe_request
from tests.waiting import until

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
        assert list(inspect.signature(receiver._handle_rtcp_packet).parameters) == ["packet"]
        # the decoder thread is fed from that queue with (codec, JitterFrame) and stopped by None
        worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
        assert "input_q.get()" in worker and "if task is None" in worker and "codec, encoded_frame = task" in worker
        handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
        assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
        assert "self.__decoder_thread" in inspect.getsource(RTCRtpReceiver.receive)
    finally:
        await pc.close()


async def test_dtls_transport_private_names() -> None:
    """Decrypted RTP goes through _handle_rtp_data (tapped), RTCP is routed to _handle_rtcp_packet, and the SRTP
    session our sender protects with is _tx_srtp, set up from the DTLS keys."""
    pc = RTCPeerConnection()
    try:
        dtls = pc.addTransceiver("video").receiver.transport
        assert dtls._tx_srtp is None
        assert list(inspect.signature(dtls._handle_rtp_data).parameters) == ["data", "arrival_time_ms"]
        recv_next = inspect.getsource(rtcdtlstransport.RTCDtlsTransport._recv_next)
        assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv_next
        assert "data = self._rx_srtp.unprotect(data)" in recv_next
        assert "receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in inspect.getsource(
            rtcdtlstransport.RTCDtlsTransport._handle_rtp_data
        )
        assert "await recipient._handle_rtcp_packet(packet)" in inspect.getsource(
            rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data
        )
        setup = inspect.getsource(rtcdtlstransport.RTCDtlsTransport._setup_srtp)
        assert "self._tx_srtp = Session(tx_policy)" in setup and "tx_policy.allow_repeat_tx = True" in setup
        assert "self.transport._send(data)" in inspect.getsource(rtcdtlstransport.RTCDtlsTransport._send_rtp)
        assert "self._connection = gatherer._connection" in inspect.getsource(rtcicetransport.RTCIceTransport)
    finally:
        await pc.close()


async def test_sender_private_names() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        assert isinstance(sender._stream_id, str) and isinstance(sender._track_id, str)
        assert isinstance(sender._ssrc, int) and isinstance(sender._rtx_ssrc, int)
        for name in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
            assert isinstance(getattr(sender, f"_RTCRtpSender__{name}"), asyncio.Event)
        send = inspect.getsource(RTCRtpSender.send)
        assert "self._run_rtp(parameters.codecs[0])" in send and "self._run_rtcp()" in send
        stop = inspect.getsource(RTCRtpSender.stop)
        assert "self.__rtp_started.wait(), self.__rtcp_started.wait()" in stop
        assert "self.__rtp_exited.wait(), self.__rtcp_exited.wait()" in stop
        assert list(inspect.signature(sender._handle_rtcp_packet).parameters) == ["packet"]
        # PLI and FIR from the remote peer end up in _send_keyframe
        rtcp = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
        assert "RTCP_PSFB_PLI" in rtcp and "RTCP_PSFB_FIR" in rtcp and "self._send_keyframe()" in rtcp
        # the SDP announces the sender's SSRCs
        assert "transceiver.sender._ssrc" in inspect.getsource(rtcpeerconnection)
        assert "transceiver.sender._rtx_ssrc" in inspect.getsource(rtcpeerconnection)
        assert "_stream_id" in inspect.getsource(rtcrtpsender)
        msid = 'f"{transceiver.sender._stream_id} {transceiver.sender._track_id}"'
        assert msid in inspect.getsource(rtcpeerconnection)
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
        # our path sends on the nominated pair's socket, as Connection.sendto does
        assert isinstance(connection._nominated, dict)
        sendto = inspect.getsource(aioice.Connection.sendto)
        assert "self._nominated.get(component)" in sendto and "active_pair.remote_addr" in sendto
        assert "active_pair.protocol.send_data" in sendto
        assert "self.transport.sendto(data, addr)" in inspect.getsource(aioice.ice.StunProtocol.send_data)
    finally:
        await pc.close()


async def test_consent_private_names() -> None:
    """keep_consent_through_loss replaces the consent task connect() starts, with checks built and sent as
    aioice's own, and closes the connection as aioice does when consent expires."""
    connect = inspect.getsource(aioice.Connection.connect)
    assert "self._query_consent_task = asyncio.create_task(self.query_consent())" in connect
    original = inspect.getsource(aioice.Connection.query_consent)
    assert "self.build_request(pair, nominate=False)" in original and "pair.protocol.request(" in original
    assert "self._query_consent_task = None" in original and "await self.close()" in original
    assert "self._query_consent_task.cancel()" in inspect.getsource(aioice.Connection.close)
    assert list(inspect.signature(aioice.Connection.build_request).parameters) == ["self", "pair", "nominate"]
    assert list(inspect.signature(aioice.ice.StunProtocol.request).parameters) == [
        "self",
        "request",
        "addr",
        "integrity_key",
        "retransmissions",
    ]
    assert issubclass(aioice.stun.TransactionTimeout, aioice.stun.TransactionError)
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        aiortc_adapter.keep_consent_through_loss(pc)
        connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
        assert connection.remote_password is None and connection.query_consent.__name__ == "query_consent"
        assert connection.query_consent.__qualname__.startswith("_consent_keeper")
    finally:
        await pc.close()


async def test_adapter_end_to_end_on_loopback() -> None:
    """Loopback candidates, decrypted packets taken at the transport (the receiver gets none), and our own path
    sending a keyframe request that the publisher's aiortc accepts (SRTP keys and nominated pair are right)."""
    publisher, subscriber = RTCPeerConnection(), RTCPeerConnection()
    keyframe_requests: list[int] = []
    packets: list[MediaPacket] = []
    routed: list[int] = []
    try:
        sender = publisher.addTrack(ColourTrack("red"))
        aiortc_adapter.on_keyframe_request(sender, lambda: keyframe_requests.append(1))
        aiortc_adapter.gather_host_candidates(publisher, ["127.0.0.1"], None)
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = publisher.localDescription.sdp
        assert "127.0.0.1" in offer

        await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        receiver = subscriber.getTransceivers()[0].receiver

        def take(data: bytes) -> bool:
            packet = MediaPacket.parse(data, "VP8")
            if packet is not None:
                packets.append(packet)
            return True

        aiortc_adapter.tap_transport_rtp(receiver.transport, take)
        original = receiver._handle_rtp_packet

        async def count(packet: RtpPacket, arrival_time_ms: int) -> None:
            routed.append(1)
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = count  # type: ignore[method-assign]
        aiortc_adapter.gather_host_candidates(subscriber, ["127.0.0.1"], None)
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)
        await until(lambda: len([p for p in packets if p.marker]) >= 3, 5)
        assert packets[0].keyframe and packets[0].ssrc == sender._ssrc
        assert routed == []  # aiortc's receiver saw none of them

        path = aiortc_adapter.IceSrtpPath(receiver.transport)
        assert path.send_rtcp(keyframe_request(1234, sender._ssrc, 1))
        await until(lambda: bool(keyframe_requests), 2)
    finally:
        await subscriber.close()
        await publisher.close()
    assert not path.send_rtp(b"\x80" * 20), "nothing is sent once the connection is closed"


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
