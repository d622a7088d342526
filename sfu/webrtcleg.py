"""A WebRTC leg: one aiortc RTCPeerConnection (ICE, DTLS-SRTP, BUNDLE, rtcp-mux) for a browser participant.

Audio: received packets go to the mixer's inbox undecoded (with their RFC 6464 level); the mix comes back as
encoded packets. Video: the publisher's RTP packets are taken at the DTLS transport, as soon as they are decrypted
(aiortc's receiver never sees them), and go one by one to its `VideoSource`; the slots added by the re-offer send
other publishers' packets through our own `SlotSender` (header rewrite, SRTP, one send), aiortc's senders for them
only negotiating. Nothing is decoded or encoded here.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket, RtpPacket

from . import aiortc_adapter, sdp
from .codecs import AudioCodec, is_supported_audio
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox, InboundAudio
from .packettrack import EncodedTrack
from .ports import PortAllocator
from .rtprewriter import ABS_SEND_TIME_URI, MID_URI, MediaPacket, unwrap_rtx
from .rtpsender import SlotSender, send_reports
from .rtpvideo import keyframe_request
from .settings import MediaSettings
from .upstream import UpstreamFeedback

logger = logging.getLogger(__name__)

aiortc_adapter.use_fast_clock()

AUDIO_PREFERENCE = ("opus", "G722", "PCMU", "PCMA")
#: encoded audio packets queued for the sender before the oldest are dropped
AUDIO_QUEUE_LIMIT = 3


class MixTrack(EncodedTrack):
    """The audio a participant hears: encoded mix packets; a late sender drops the oldest, never piles up delay."""

    def __init__(self) -> None:
        super().__init__("audio")

    def put(self, packet: av.Packet) -> None:
        if self.readyState != "live":
            return
        while self.queue.qsize() >= AUDIO_QUEUE_LIMIT:
            self.queue.get_nowait()
        self.queue.put_nowait(packet)


def _capabilities(kind: str, names: tuple[str, ...]) -> list[Any]:
    """Sender capabilities of `kind` ordered by `names` (RTX kept after its codec family), others dropped."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    ordered = []
    for name in names:
        ordered += [c for c in caps if c.name.lower() == name.lower()]
    if kind == "video" and ordered:
        ordered += [c for c in caps if c.name.lower() == "rtx"]
    return ordered


class WebRtcLeg(EventEmitter):
    """Events: ``disconnected`` (ICE/DTLS failed or the peer went away)."""

    kind = "webrtc"

    def __init__(
        self,
        participant_id: str,
        settings: MediaSettings,
        ports: PortAllocator | None,
        video_codecs: tuple[str, ...],
        video: bool = True,
    ) -> None:
        super().__init__()
        self.participant_id = participant_id
        self.settings = settings
        self.ports = ports
        self.video_codecs = video_codecs
        #: False: the participant's video is refused (answered inactive), for audio-only rooms
        self.video = video
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.inbox = AudioInbox()
        self.audio_codec: AudioCodec | None = None
        self.video_source: VideoSource | None = None
        self.slots: list[VideoSlot] = []
        self.mix_track = MixTrack()
        self.offered_video_codecs: tuple[str, ...] = ()
        self._audio_codecs: dict[int, AudioCodec] = {}
        self._audio_transceiver: RTCRtpTransceiver | None = None
        self._video_transceiver: RTCRtpTransceiver | None = None
        self._video_ssrc: int | None = None
        self._video_payload_types: dict[int, str] = {}  # the camera's payload types: codec name
        self._video_rtx_types: dict[int, int] = {}  # its RTX payload types: the payload type they repair
        self._slot_transceivers: list[RTCRtpTransceiver] = []
        self._path: aiortc_adapter.IceSrtpPath | None = None
        self._upstream: UpstreamFeedback | None = None
        self._rtcp_ssrc = random.getrandbits(32)
        self._fir_sequence = 0
        self._handled: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._audio_pts = 0
        self._closed = False
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def video_sources(self) -> list[VideoSource]:
        return [self.video_source] if self.video_source is not None else []

    # negotiation

    async def answer(self, offer: str) -> str:
        """Answer the participant's first offer: audio sendrecv (the mix), first video recvonly (its camera)."""
        description = sdp.parse(offer)
        await self._set_remote(offer, "offer")
        for media in description.media:
            if media.kind == "video":
                self._video_ssrc = sdp.primary_ssrc(media)
                self.offered_video_codecs = tuple(
                    dict.fromkeys(c.name.upper() for c in media.rtp.codecs if not is_rtx(c))
                )
                break
        self._prepare_transceivers()
        return await self._local_answer()

    async def handle_offer(self, offer: str) -> str:
        """Answer a re-offer from the participant (new streams are received and dropped unless they are ours)."""
        self._check_open()
        await self._set_remote(offer, "offer")
        self._prepare_transceivers()
        return await self._local_answer()

    async def create_slots_offer(self, count: int) -> str:
        """Add `count` sendonly video slots and return the offer to send (a re-INVITE, after the ACK)."""
        self._check_open()
        if self.slots:
            raise SdpError("video slots were already added")
        names = tuple(c for c in self.video_codecs if not self.offered_video_codecs or c in self.offered_video_codecs)
        preferences = _capabilities("video", names or self.video_codecs)
        for index in range(count):
            slot = VideoSlot(index, None)
            transceiver = self.pc.addTransceiver("video", direction="sendonly")
            transceiver.setCodecPreferences(preferences)
            aiortc_adapter.set_stream_id(transceiver.sender, f"{self.participant_id}-slot{index}")
            aiortc_adapter.take_over_sender(
                transceiver.sender,
                self._slot_rtcp_handler(slot),
                # the slot's sender reports, run by aiortc's sender for as long as the m-line is started
                functools.partial(send_reports, functools.partial(getattr, slot, "sender")),
            )
            self._tap_unused(transceiver.receiver)
            self._handled.add(id(transceiver))
            self.slots.append(slot)
            self._slot_transceivers.append(transceiver)
        aiortc_adapter.gather_host_candidates(self.pc, self.settings.addresses(), self.ports)
        offer = await aiortc_adapter.create_reoffer(self.pc)
        await self.pc.setLocalDescription(offer)
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            slot.mid = transceiver.mid
        return self._announce(self.pc.localDescription.sdp)

    async def accept_slots_answer(self, answer: str) -> None:
        """Apply the participant's answer to the slots offer; slots it accepted start receiving video."""
        self._check_open()
        description = sdp.parse(answer)
        await self._set_remote(answer, "answer")
        by_mid = {m.rtp.muxId: m for m in description.media}
        local = {m.rtp.muxId: m for m in sdp.parse(self.pc.localDescription.sdp).media}
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            media = by_mid.get(slot.mid or "")
            if media is None or media.port == 0 or media.direction not in ("recvonly", "sendrecv"):
                continue
            if self._path is None:
                continue
            codecs = [c for c in media.rtp.codecs if not is_rtx(c)]
            chosen = next((c for n in self.video_codecs for c in codecs if c.name.upper() == n.upper()), None)
            if chosen is None:
                continue
            rtx = next(
                (c for c in media.rtp.codecs if is_rtx(c) and c.parameters.get("apt") == chosen.payloadType), None
            )
            extensions = {e.uri: e.id for e in media.rtp.headerExtensions}
            ssrc, rtx_ssrc = aiortc_adapter.sender_ssrcs(transceiver.sender)
            ours = local.get(slot.mid or "")
            cname = next((s.cname for s in ours.ssrc if s.ssrc == ssrc), None) if ours is not None else None
            slot.codec_name = chosen.name.upper()
            slot.sender = SlotSender(
                self._path,
                ssrc,
                chosen.payloadType or 0,
                rtx_ssrc=rtx_ssrc if rtx is not None else None,
                rtx_payload_type=rtx.payloadType if rtx is not None else None,
                cname=cname,
                mid=slot.mid,
                mid_id=extensions.get(MID_URI),
                abs_send_time_id=extensions.get(ABS_SEND_TIME_URI),
                on_keyframe_request=slot.on_keyframe_request,
            )
            slot.active = True

    @staticmethod
    def _slot_rtcp_handler(slot: VideoSlot) -> Callable[[AnyRtcpPacket], None]:
        def handle(packet: AnyRtcpPacket) -> None:
            sender = slot.sender
            if isinstance(sender, SlotSender):
                sender.handle_rtcp(packet)

        return handle

    async def _set_remote(self, text: str, kind: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp.align_bundled_setup(text), type=kind))
        except Exception as exc:
            raise SdpError(f"cannot apply the {kind}: {exc}") from exc

    async def _local_answer(self) -> str:
        aiortc_adapter.gather_host_candidates(self.pc, self.settings.addresses(), self.ports)
        try:
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise SdpError(f"cannot answer: {exc}") from exc
        local = sdp.parse(self.pc.localDescription.sdp)
        for media in local.media:
            if media.kind == "audio" and self._audio_transceiver is not None:
                if media.rtp.muxId == self._audio_transceiver.mid:
                    self._audio_codecs = {
                        c.payloadType or 0: AudioCodec.from_parameters(c)
                        for c in media.rtp.codecs
                        if is_supported_audio(c.name)
                    }
                    first = next((c for c in media.rtp.codecs if is_supported_audio(c.name)), None)
                    self.audio_codec = AudioCodec.from_parameters(first) if first is not None else None
            if media.kind == "video" and self._video_transceiver is not None:
                if media.rtp.muxId == self._video_transceiver.mid:
                    codecs = [c for c in media.rtp.codecs if not is_rtx(c)]
                    self._video_payload_types = {c.payloadType or 0: c.name.upper() for c in codecs}
                    self._video_rtx_types = {
                        c.payloadType or 0: apt
                        for c in media.rtp.codecs
                        if is_rtx(c) and isinstance(apt := c.parameters.get("apt"), int)
                    }
                    if codecs and self.video_source is None and media.direction in ("recvonly", "sendrecv"):
                        self.video_source = VideoSource(self.participant_id, codecs[0].name, self._request_keyframe)
                    if self.video_source is not None and self._upstream is None and self._path is not None:
                        extensions = {e.uri: e.id for e in media.rtp.headerExtensions}
                        self._upstream = UpstreamFeedback(
                            self._path.send_rtcp, self._rtcp_ssrc, extensions.get(ABS_SEND_TIME_URI)
                        )
                        self._spawn(self._upstream.run_reports())
        return self._announce(self.pc.localDescription.sdp)

    def _prepare_transceivers(self) -> None:
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) in self._handled:
                continue
            self._handled.add(id(transceiver))
            if self._path is None and transceiver.receiver.transport is not None:
                # one DTLS transport for the whole bundle: every slot sends on it, the camera arrives on it
                self._path = aiortc_adapter.IceSrtpPath(transceiver.receiver.transport)
            if transceiver.kind == "audio" and self._audio_transceiver is None:
                self._audio_transceiver = transceiver
                transceiver.setCodecPreferences(_capabilities("audio", AUDIO_PREFERENCE))
                transceiver.sender.replaceTrack(self.mix_track)
                transceiver.direction = "sendrecv"
                aiortc_adapter.tap_rtp_packets(transceiver.receiver, self._on_audio_rtp, consume=True)
                self._tap_unused(transceiver.receiver)
            elif transceiver.kind == "video" and self._video_transceiver is None and self.video:
                self._video_transceiver = transceiver
                transceiver.setCodecPreferences(_capabilities("video", self.video_codecs))
                transceiver.direction = "recvonly"
                aiortc_adapter.tap_transport_rtp(transceiver.receiver.transport, self._on_transport_rtp)
                aiortc_adapter.tap_rtcp_packets(transceiver.receiver, self._on_video_rtcp)
                self._tap_unused(transceiver.receiver)
            else:
                transceiver.direction = "inactive"
                self._tap_unused(transceiver.receiver)

    @staticmethod
    def _tap_unused(receiver: RTCRtpReceiver) -> None:
        aiortc_adapter.tap_encoded_frames(receiver, lambda codec, frame: None)

    def _announce(self, text: str) -> str:
        return sdp.announce_address(text, self.settings.addresses(), self.settings.public_address)

    # media

    def _on_audio_rtp(self, packet: RtpPacket) -> None:
        codec = self._audio_codecs.get(packet.payload_type)
        if codec is None or not packet.payload:
            return
        level = packet.extensions.audio_level
        self.inbox.push(InboundAudio(codec, packet.payload, packet.timestamp, None if level is None else level[1]))

    def _on_transport_rtp(self, data: bytes) -> bool:
        """A decrypted RTP packet of the bundle: the camera's video (and its retransmissions) is taken here."""
        if len(data) < 12:
            return False
        payload_type = data[1] & 0x7F
        codec = self._video_payload_types.get(payload_type)
        if codec is None:
            repaired = self._video_rtx_types.get(payload_type)
            codec = self._video_payload_types.get(repaired) if repaired is not None else None
            if codec is None or repaired is None:
                return False  # audio, or nothing of ours: aiortc routes it
            if self._video_ssrc is None:
                return True
            original = unwrap_rtx(data, repaired, self._video_ssrc)
            if original is None:
                return True  # padding (bandwidth probing)
            data = original
        source, upstream = self.video_source, self._upstream
        if source is None:
            return True
        packet = MediaPacket.parse(data, codec)
        if packet is None:
            return True
        if self._video_ssrc is None:
            self._video_ssrc = packet.ssrc
        if upstream is not None:
            upstream.on_packet(packet)
        source.on_packet(packet)
        return True

    def _on_video_rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self._video_ssrc:
            if self.video_source is not None:
                self.video_source.sender_report = (time.monotonic(), packet.sender_info.rtp_timestamp)
            if self._upstream is not None:
                self._upstream.on_sender_report(packet.ssrc, packet.sender_info.ntp_timestamp)

    def _request_keyframe(self) -> None:
        """PLI and FIR to the camera's primary SSRC (Chrome ignores requests for its RTX SSRC)."""
        if self._path is None or self._video_ssrc is None or self._closed:
            return
        self._fir_sequence += 1
        self._path.send_rtcp(keyframe_request(self._rtcp_ssrc, self._video_ssrc, self._fir_sequence))

    @property
    def dtx(self) -> bool:
        """Browsers take Opus with gaps in silence (DTX): the mixer may send nothing in a tick."""
        return self.audio_codec is not None and self.audio_codec.key == "opus"

    def send_audio(self, payloads: list[bytes]) -> None:
        codec = self.audio_codec
        if codec is None:
            return
        if not payloads:
            self._audio_pts += codec.samples_per_packet  # DTX: time goes on, nothing is sent
            return
        for payload in payloads:
            packet = av.Packet(payload)
            packet.pts = self._audio_pts
            packet.time_base = fractions.Fraction(1, codec.clock_rate)
            self._audio_pts += codec.samples_per_packet
            self.mix_track.put(packet)

    # lifecycle

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self._closed:
            self.emit("disconnected", self.pc.connectionState)

    def _check_open(self) -> None:
        if self._closed:
            raise ParticipantClosed("the leg is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.video_source is not None:
            self.video_source.close()
        for slot in self.slots:
            slot.close()
        self.mix_track.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.remove_all_listeners()
