"""A WebRTC leg: one aiortc RTCPeerConnection (ICE, DTLS-SRTP, BUNDLE, rtcp-mux) for a browser participant.

Audio: received packets go to the mixer's inbox undecoded (with their RFC 6464 level); the mix comes back as
encoded packets. Video: the publisher's RTP packets are taken at the DTLS transport, as soon as they are decrypted
(aiortc's receiver never sees them), and go one by one to its `VideoSource`; the slots added by the re-offer send
other publishers' packets through our own `SlotSender` (header rewrite, SRTP, one send) and the leg's `Pacer`
(its rate from the participant's `BandwidthEstimate`; the mix, sent by aiortc, is charged to it), aiortc's senders
for them only negotiating. Nothing is decoded or encoded here.
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
from aiortc.sdp import MediaDescription, SessionDescription

from . import aiortc_adapter, sdp
from .bandwidth import BandwidthEstimate
from .codecs import AudioCodec, is_supported_audio
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox, InboundAudio
from .pacer import Pacer
from .packettrack import EncodedTrack
from .ports import PortAllocator
from .quality import InboundStream, LinkState, MediaCounters, ReceiverReport
from .rtprewriter import ABS_SEND_TIME_URI, MID_URI, MediaPacket, unwrap_rtx
from .rtpsender import SlotSender, add_video_figures, send_reports
from .rtpvideo import keyframe_request
from .settings import MediaSettings
from .upstream import UpstreamFeedback

logger = logging.getLogger(__name__)

aiortc_adapter.use_fast_clock()

AUDIO_PREFERENCE = ("opus", "G722", "PCMU", "PCMA")
#: bytes aiortc's sender adds to an audio payload: RTP header, its extensions (mid, audio level), SRTP tag
SRTP_AUDIO_OVERHEAD = 12 + 12 + 10
#: encoded audio packets queued for the sender before the oldest are dropped
AUDIO_QUEUE_LIMIT = 3


class MixTrack(EncodedTrack):
    """The audio a participant hears: encoded mix packets; a late sender drops the oldest, never piles up delay."""

    def __init__(self) -> None:
        super().__init__("audio")
        #: packets (and their payload bytes) handed to the sender, less those dropped for lateness
        self.packets = 0
        self.octets = 0

    def put(self, packet: av.Packet) -> None:
        if self.readyState != "live":
            return
        while self.queue.qsize() >= AUDIO_QUEUE_LIMIT:
            dropped = self.queue.get_nowait()
            if dropped is not None:
                self.packets -= 1
                self.octets -= dropped.size
        self.queue.put_nowait(packet)
        self.packets += 1
        self.octets += packet.size


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
        #: the screen the participant shares: a second video m-line of his, marked `a=content:slides` (RFC 4796)
        self.screen_source: VideoSource | None = None
        self.slots: list[VideoSlot] = []
        self.mix_track = MixTrack()
        #: what the participant's link takes, and the pacer his video slots send through (audio is charged to it)
        self.pacer = Pacer(BandwidthEstimate())
        self.offered_video_codecs: tuple[str, ...] = ()
        self._audio_codecs: dict[int, AudioCodec] = {}
        self._audio_transceiver: RTCRtpTransceiver | None = None
        self._video_transceiver: RTCRtpTransceiver | None = None
        self._video_ssrc: int | None = None
        self._video_payload_types: dict[int, str] = {}  # the camera's payload types: codec name
        self._video_rtx_types: dict[int, int] = {}  # its RTX payload types: the payload type they repair
        self._slides_mids: set[str] = set()  # the m-lines of the latest offer marked a=content:slides
        self._screen_transceiver: RTCRtpTransceiver | None = None
        self._screen_ssrcs: tuple[int | None, int | None] = (None, None)  # its primary and RTX SSRCs (the offer's)
        self._screen_payload_types: dict[int, str] = {}
        self._screen_rtx_types: dict[int, int] = {}
        self._transport_tapped = False
        self._slot_transceivers: list[RTCRtpTransceiver] = []
        self._path: aiortc_adapter.IceSrtpPath | None = None
        self._upstream: UpstreamFeedback | None = None
        self._rtcp_ssrc = random.getrandbits(32)
        self._fir_sequence = 0
        self._handled: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._audio_pts = 0
        #: the audio the participant sends us: packets, loss, jitter (Opus's clock; another codec's is set on answer)
        self._audio_in = InboundStream(48000)
        #: what his receiver last reported of the mix we send him, and the round trip it measured (aiortc's sender)
        self._audio_report: ReceiverReport | None = None
        self._audio_round_trip: float | None = None
        #: event-loop time spent on the video he sends (take in, fan out to the slots showing it)
        self.forwarding_seconds = 0.0
        #: the counters as the leg closed (its slots let their senders go)
        self._final_counters: MediaCounters | None = None
        self._closed = False
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def video_sources(self) -> list[VideoSource]:
        """His camera, then the screen he shares (each when there is one)."""
        return [source for source in (self.video_source, self.screen_source) if source is not None]

    # negotiation

    async def answer(self, offer: str) -> str:
        """Answer the participant's first offer: audio sendrecv (the mix), first video recvonly (its camera)."""
        description = sdp.parse(offer)
        await self._set_remote(offer, "offer")
        self._note_slides(offer, description)
        for media in description.media:
            if media.kind == "video" and media.rtp.muxId not in self._slides_mids:
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
        description = sdp.parse(offer)
        await self._set_remote(offer, "offer")
        self._note_slides(offer, description)
        self._prepare_transceivers()
        return await self._local_answer()

    def _note_slides(self, offer: str, description: SessionDescription) -> None:
        """Which m-line of the offer is a shared screen, and the SSRCs it sends from (demultiplexed by SSRC: in the
        bundle it shares the camera's payload types)."""
        self._slides_mids = sdp.slides_mids(offer)
        for media in description.media:
            if media.kind == "video" and media.rtp.muxId in self._slides_mids:
                self._screen_ssrcs = (sdp.primary_ssrc(media), sdp.rtx_ssrc(media))

    async def create_slots_offer(
        self, labels: list[str | None], relabels: list[tuple[VideoSlot, str]] | None = None
    ) -> str:
        """Add one sendonly video slot per item of `labels` (the participant each is announced with, its m-line's
        ``a=label``) to those there are, announce the slots of `relabels` for another participant each (a new
        label and a new msid), and return the offer to send (a re-INVITE, after the ACK)."""
        self._check_open()
        if self.pc.signalingState != "stable":
            raise SdpError(f"a negotiation is in progress ({self.pc.signalingState})")
        for slot, owner in relabels or []:
            slot.label = owner
            self._announce_slot(slot, self._slot_transceivers[slot.index])
        names = tuple(c for c in self.video_codecs if not self.offered_video_codecs or c in self.offered_video_codecs)
        preferences = _capabilities("video", names or self.video_codecs)
        added: list[tuple[VideoSlot, RTCRtpTransceiver]] = []
        for label in labels:
            slot = VideoSlot(len(self.slots), None)
            slot.label = label
            transceiver = self.pc.addTransceiver("video", direction="sendonly")
            transceiver.setCodecPreferences(preferences)
            self._announce_slot(slot, transceiver)
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
            added.append((slot, transceiver))
        aiortc_adapter.gather_host_candidates(self.pc, self.settings.addresses(), self.ports)
        aiortc_adapter.keep_consent_through_loss(self.pc)
        offer = await aiortc_adapter.create_reoffer(self.pc)
        await self.pc.setLocalDescription(offer)
        for slot, transceiver in added:
            slot.mid = transceiver.mid
        return self._announce(self.pc.localDescription.sdp)

    async def accept_slots_answer(self, answer: str) -> None:
        """Apply the participant's answer to the slots offer; the new slots it accepted start receiving video."""
        self._check_open()
        description = sdp.parse(answer)
        await self._set_remote(answer, "answer")
        by_mid = {m.rtp.muxId: m for m in description.media}
        local = {m.rtp.muxId: m for m in sdp.parse(self.pc.localDescription.sdp).media}
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            if slot.sender is not None:
                continue  # negotiated by an earlier offer: it goes on as it was
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
                pacer=self.pacer,
                remb=any(feedback.type == "goog-remb" for feedback in chosen.rtcpFeedback),
            )
            slot.active = True

    def _announce_slot(self, slot: VideoSlot, transceiver: RTCRtpTransceiver) -> None:
        """A fresh msid for the slot's m-line: a receiver that maps streams to people by label (Wazo's SDK) gets a
        new stream for each participant the slot is announced for."""
        slot.announcements += 1
        name = f"{self.participant_id}-slot{slot.index}-{slot.announcements}"
        aiortc_adapter.set_msid(transceiver.sender, name, f"{name}-video")

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
        aiortc_adapter.keep_consent_through_loss(self.pc)
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
                    if self.audio_codec is not None and self._audio_in.reception is None:
                        self._audio_in.restart(self.audio_codec.clock_rate)
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
                    if self.video_source is not None:
                        self._ensure_upstream(media)
            if media.kind == "video" and self._screen_transceiver is not None:
                if media.rtp.muxId == self._screen_transceiver.mid:
                    self._sync_screen(media)
        return self._announce(self.pc.localDescription.sdp)

    def _ensure_upstream(self, media: MediaDescription) -> None:
        """Receiver reports, NACKs and REMB for the video he sends (camera and screen alike, one per SSRC)."""
        if self._upstream is None and self._path is not None:
            extensions = {e.uri: e.id for e in media.rtp.headerExtensions}
            self._upstream = UpstreamFeedback(self._path.send_rtcp, self._rtcp_ssrc, extensions.get(ABS_SEND_TIME_URI))
            self._spawn(self._upstream.run_reports())

    def _sync_screen(self, media: MediaDescription) -> None:
        """The screen m-line as answered: receiving (a share started, or goes on) or not (it stopped)."""
        codecs = [c for c in media.rtp.codecs if not is_rtx(c)]
        receiving = media.direction in ("recvonly", "sendrecv") and media.port != 0 and bool(codecs)
        if receiving and self._screen_ssrcs[0] is not None:
            self._screen_payload_types = {c.payloadType or 0: c.name.upper() for c in codecs}
            self._screen_rtx_types = {
                c.payloadType or 0: apt
                for c in media.rtp.codecs
                if is_rtx(c) and isinstance(apt := c.parameters.get("apt"), int)
            }
            if self.screen_source is None:
                self.screen_source = VideoSource(
                    self.participant_id, codecs[0].name, self._request_screen_keyframe, content="slides"
                )
            self._ensure_upstream(media)
        elif self.screen_source is not None:
            self.screen_source.close()
            self.screen_source = None

    def _prepare_transceivers(self) -> None:
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) in self._handled:
                continue
            self._handled.add(id(transceiver))
            if self._path is None and transceiver.receiver.transport is not None:
                # one DTLS transport for the whole bundle: every slot sends on it, the camera arrives on it
                self._path = aiortc_adapter.IceSrtpPath(transceiver.receiver.transport)
            if transceiver.kind == "video" and transceiver.mid in self._slides_mids and self.video:
                if self._screen_transceiver is None:
                    self._screen_transceiver = transceiver
                    transceiver.setCodecPreferences(_capabilities("video", self.video_codecs))
                    transceiver.direction = "recvonly"
                    self._tap_transport(transceiver)
                    aiortc_adapter.tap_rtcp_packets(transceiver.receiver, self._on_video_rtcp)
                else:
                    transceiver.direction = "inactive"  # one shared screen per participant
                self._tap_unused(transceiver.receiver)
            elif transceiver.kind == "audio" and self._audio_transceiver is None:
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
                self._tap_transport(transceiver)
                aiortc_adapter.tap_rtcp_packets(transceiver.receiver, self._on_video_rtcp)
                self._tap_unused(transceiver.receiver)
            else:
                transceiver.direction = "inactive"
                self._tap_unused(transceiver.receiver)

    def _tap_transport(self, transceiver: RTCRtpTransceiver) -> None:
        """Take the video he sends at the bundle's transport (once: camera and screen share it)."""
        if not self._transport_tapped:
            self._transport_tapped = True
            aiortc_adapter.tap_transport_rtp(transceiver.receiver.transport, self._on_transport_rtp)

    @staticmethod
    def _tap_unused(receiver: RTCRtpReceiver) -> None:
        aiortc_adapter.tap_encoded_frames(receiver, lambda codec, frame: None)

    def _announce(self, text: str) -> str:
        """The SDP as sent: the public address in place of the host ones, each slot's m-line labelled."""
        labels = {slot.mid: slot.label for slot in self.slots if slot.mid is not None and slot.label is not None}
        text = sdp.set_labels(text, labels)
        return sdp.announce_address(text, self.settings.addresses(), self.settings.public_address)

    # media

    def _on_audio_rtp(self, packet: RtpPacket) -> None:
        codec = self._audio_codecs.get(packet.payload_type)
        self._audio_in.add(packet.ssrc, packet.sequence_number, packet.timestamp, time.monotonic(), len(packet.payload))
        if codec is None or not packet.payload:
            return
        level = packet.extensions.audio_level
        self.inbox.push(InboundAudio(codec, packet.payload, packet.timestamp, None if level is None else level[1]))

    def _on_transport_rtp(self, data: bytes) -> bool:
        """A decrypted RTP packet of the bundle: the camera's video (and its retransmissions) is taken here."""
        if len(data) < 12:
            return False
        payload_type = data[1] & 0x7F
        screen = int.from_bytes(data[8:12], "big") in self._screen_ssrcs
        types, rtx_types = (
            (self._screen_payload_types, self._screen_rtx_types)
            if screen
            else (self._video_payload_types, self._video_rtx_types)
        )
        codec = types.get(payload_type)
        repaired = None
        if codec is None:
            repaired = rtx_types.get(payload_type)
            codec = types.get(repaired) if repaired is not None else None
            if codec is None:
                return screen  # a stopped share's last packets are dropped; audio goes on to aiortc
        started = time.perf_counter()
        self._take_video(data, codec, repaired, screen)
        self.forwarding_seconds += time.perf_counter() - started
        return True

    def _take_video(self, data: bytes, codec: str, repaired: int | None, screen: bool = False) -> None:
        if repaired is not None:
            original_ssrc = self._screen_ssrcs[0] if screen else self._video_ssrc
            if original_ssrc is None:
                return
            original = unwrap_rtx(data, repaired, original_ssrc)
            if original is None:
                return  # padding (bandwidth probing)
            data = original
        source, upstream = (self.screen_source if screen else self.video_source), self._upstream
        if source is None:
            return
        packet = MediaPacket.parse(data, codec)
        if packet is None:
            return
        if self._video_ssrc is None and not screen:
            self._video_ssrc = packet.ssrc
        if upstream is not None:
            upstream.on_packet(packet)
        source.on_packet(packet)

    def _on_video_rtcp(self, packet: AnyRtcpPacket) -> None:
        if not isinstance(packet, RtcpSrPacket):
            return
        source = (
            self.video_source
            if packet.ssrc == self._video_ssrc
            else self.screen_source
            if packet.ssrc == self._screen_ssrcs[0]
            else None
        )
        if source is not None:
            source.sender_report = (time.monotonic(), packet.sender_info.rtp_timestamp)
            if self._upstream is not None:
                self._upstream.on_sender_report(packet.ssrc, packet.sender_info.ntp_timestamp)

    def _request_keyframe(self) -> None:
        """PLI and FIR to the camera's primary SSRC (Chrome ignores requests for its RTX SSRC)."""
        self._send_keyframe_request(self._video_ssrc)

    def _request_screen_keyframe(self) -> None:
        self._send_keyframe_request(self._screen_ssrcs[0])

    def _send_keyframe_request(self, ssrc: int | None) -> None:
        if self._path is None or ssrc is None or self._closed:
            return
        self._fir_sequence += 1
        self._path.send_rtcp(keyframe_request(self._rtcp_ssrc, ssrc, self._fir_sequence))

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
            self.pacer.charge(len(payload) + SRTP_AUDIO_OVERHEAD)

    # call quality

    def media_counters(self) -> MediaCounters:
        if self._final_counters is not None:
            final = MediaCounters()
            final.add(self._final_counters)
            return final
        counters = MediaCounters(
            audio_packets_in=self._audio_in.packets,
            audio_bytes_in=self._audio_in.octets,
            audio_lost_in=self._audio_in.lost,
            audio_packets_out=self.mix_track.packets,
            audio_bytes_out=self.mix_track.octets,
            forwarding_seconds=self.forwarding_seconds,
        )
        if self._audio_report is not None:
            counters.audio_lost_out = self._audio_report.packets_lost
        for source in self.video_sources:
            counters.video_packets_in += source.packets
            counters.video_bytes_in += source.octets
            counters.keyframe_requests_sent += source.keyframe_requests
        if self._upstream is not None:
            counters.video_lost_in = self._upstream.packets_lost
            counters.nacks_sent = self._upstream.nacks_sent
        for slot in self.slots:
            if isinstance(slot.sender, SlotSender):
                slot.sender.count_into(counters)
                counters.keyframe_requests_received += slot.sender.estimate.keyframe_requests
        return counters

    async def link_state(self) -> LinkState:
        """The figures of `media_counters`, with what the participant's receiver reported (RTCP) and the video
        resolutions; the audio's reports are read from aiortc's sender of the mix."""
        await self._read_audio_reports()
        state = LinkState(self.media_counters(), round_trip_time=self._audio_round_trip)
        if self._audio_report is not None:
            state.reports["audio"] = self._audio_report
        if (jitter := self._audio_in.jitter) is not None:
            state.jitter_in["audio"] = jitter
        if self._upstream is not None and (jitter := self._upstream.jitter) is not None:
            state.jitter_in["video"] = jitter
        add_video_figures(state, self.video_sources, self.slots)
        return state

    async def _read_audio_reports(self) -> None:
        transceiver, codec = self._audio_transceiver, self.audio_codec
        if transceiver is None or codec is None or self._closed:
            return
        try:
            stats = await transceiver.sender.getStats()
        except Exception as exc:  # a connection going down: the previous figures stay
            logger.debug("%s: no sender statistics: %s", self.participant_id, exc)
            return
        for entry in stats.values():
            if entry.type == "remote-inbound-rtp":
                self._audio_report = ReceiverReport(
                    fraction_lost=entry.fractionLost / 256,
                    packets_lost=max(0, entry.packetsLost),
                    jitter=entry.jitter / codec.clock_rate,
                )
                self._audio_round_trip = entry.roundTripTime

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
        self._final_counters = self.media_counters()
        self._closed = True
        for source in self.video_sources:
            source.close()
        for slot in self.slots:
            slot.close()
        self.mix_track.stop()
        self.pacer.close()
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.remove_all_listeners()
