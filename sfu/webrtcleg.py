"""A WebRTC leg: one aiortc RTCPeerConnection (ICE, DTLS-SRTP, BUNDLE, rtcp-mux) for a browser participant.

Audio: received packets go to the mixer's inbox undecoded (with their RFC 6464 level); the mix comes back as
encoded packets. Video: the publisher's encoded frames go to its `VideoSource`; the slots added by the re-offer
send other publishers' frames. Nothing is decoded or encoded here.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Coroutine
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
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from . import aiortc_adapter, sdp
from .codecs import AudioCodec, is_supported_audio
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox, InboundAudio
from .packettrack import EncodedTrack
from .ports import PortAllocator
from .settings import MediaSettings

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
        self._video_receiver: RTCRtpReceiver | None = None
        self._video_ssrc: int | None = None
        self._video_payload_types: set[int] = set()
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
            transceiver = self.pc.addTransceiver(slot.track, direction="sendonly")
            transceiver.setCodecPreferences(preferences)
            aiortc_adapter.set_stream_id(transceiver.sender, f"{self.participant_id}-slot{index}")
            aiortc_adapter.on_keyframe_request(transceiver.sender, slot.on_keyframe_request)
            self._tap_unused(transceiver.receiver)
            self._handled.add(id(transceiver))
            self.slots.append(slot)
        aiortc_adapter.gather_host_candidates(self.pc, self.settings.addresses(), self.ports)
        offer = await aiortc_adapter.create_reoffer(self.pc)
        await self.pc.setLocalDescription(offer)
        for slot, transceiver in zip(self.slots, self._slot_transceivers(), strict=True):
            slot.mid = transceiver.mid
        return self._announce(self.pc.localDescription.sdp)

    async def accept_slots_answer(self, answer: str) -> None:
        """Apply the participant's answer to the slots offer; slots it accepted start receiving video."""
        self._check_open()
        description = sdp.parse(answer)
        await self._set_remote(answer, "answer")
        by_mid = {m.rtp.muxId: m for m in description.media}
        for slot in self.slots:
            media = by_mid.get(slot.mid or "")
            if media is None or media.port == 0 or media.direction not in ("recvonly", "sendrecv"):
                continue
            names = [c.name.upper() for c in media.rtp.codecs if not is_rtx(c)]
            chosen = next((n for n in self.video_codecs if n.upper() in names), None)
            if chosen is not None:
                slot.codec_name = chosen.upper()
                slot.active = True

    def _slot_transceivers(self) -> list[RTCRtpTransceiver]:
        tracks = {id(slot.track) for slot in self.slots}
        return [t for t in self.pc.getTransceivers() if id(t.sender.track) in tracks]

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
                    self._video_payload_types = {c.payloadType or 0 for c in codecs}
                    if codecs and self.video_source is None and media.direction in ("recvonly", "sendrecv"):
                        self.video_source = VideoSource(self.participant_id, codecs[0].name, self._request_keyframe)
        return self._announce(self.pc.localDescription.sdp)

    def _prepare_transceivers(self) -> None:
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) in self._handled:
                continue
            self._handled.add(id(transceiver))
            if transceiver.kind == "audio" and self._audio_transceiver is None:
                self._audio_transceiver = transceiver
                transceiver.setCodecPreferences(_capabilities("audio", AUDIO_PREFERENCE))
                transceiver.sender.replaceTrack(self.mix_track)
                transceiver.direction = "sendrecv"
                aiortc_adapter.tap_rtp_packets(transceiver.receiver, self._on_audio_rtp, consume=True)
                self._tap_unused(transceiver.receiver)
            elif transceiver.kind == "video" and self._video_transceiver is None and self.video:
                self._video_transceiver = transceiver
                self._video_receiver = transceiver.receiver
                transceiver.setCodecPreferences(_capabilities("video", self.video_codecs))
                transceiver.direction = "recvonly"
                aiortc_adapter.tap_rtp_packets(transceiver.receiver, self._on_video_rtp, consume=False)
                aiortc_adapter.tap_encoded_frames(transceiver.receiver, self._on_video_frame)
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

    def _on_video_rtp(self, packet: RtpPacket) -> None:
        if self._video_ssrc is None and packet.payload_type in self._video_payload_types:
            self._video_ssrc = packet.ssrc

    def _on_video_frame(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        if self.video_source is not None:
            self.video_source.on_frame(codec.name, frame.data, frame.timestamp)

    def _request_keyframe(self) -> None:
        if self._video_receiver is None or self._video_ssrc is None or self._closed:
            return
        self._spawn(aiortc_adapter.send_pli(self._video_receiver, self._video_ssrc))

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
