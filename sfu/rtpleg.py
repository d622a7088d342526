"""A plain-RTP leg (RTP/AVP, or RTP/SAVP with SDES-SRTP keys) for SIP phones and Asterisk: symmetric RTP, RFC 4733
digits, and video streams.

Audio: the first usable audio m-line, to and from the mixer, on a UDP port pair: RTP, and RTCP on the port above
(sender and receiver reports both ways, `sfu/audiortcp.py`: the phone's loss, jitter and round trip). Video (rooms
with video): every usable ``m=video`` is an `RtpVideoStream` with its own port pair. The leg sends the current
speaker's video on one of them (the one it already sends on, else the first the peer can receive on) and receives on
those the peer sends on, up to `max_received_video` (each becomes a source the room can show); whatever else is
offered is refused with port 0 and the call goes on. That is what ConfBridge in ``video_mode=sfu`` needs: it
re-INVITEs with a stream added or removed whenever a video source comes or goes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import struct
import time
from dataclasses import dataclass
from typing import cast

from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from aiortc.sdp import MediaDescription, SessionDescription

from . import sdes, sdp
from .audiortcp import AudioRtcp, OutboundAudio
from .bandwidth import BandwidthEstimate
from .codecs import AUDIO_CODECS, STATIC_AUDIO_PAYLOAD_TYPES, AudioCodec, is_supported_audio
from .dtmf import DtmfReceiver
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox, InboundAudio
from .pacer import Pacer
from .ports import PortAllocator, bind_rtp_pair
from .quality import InboundStream, LinkState, MediaCounters
from .rtpsender import add_video_figures
from .rtpvideo import OFFER_PAYLOAD_TYPES as VIDEO_PAYLOAD_TYPES
from .rtpvideo import RtcpSocket, RtpVideoStream, VideoCodec, offered_video_codecs
from .sdes import SrtpContext
from .settings import MediaSettings

logger = logging.getLogger(__name__)

#: RTP fixed header (RFC 3550 section 5.1): V=2, no padding, extension or CSRC; marker off
_HEADER = struct.Struct("!BBHII")

#: codecs in order of preference when answering, and the payload types used when offering
AUDIO_PREFERENCE = ("opus", "G722", "PCMU", "PCMA")
OFFER_PAYLOAD_TYPES = {"opus": 111, "G722": 9, "PCMU": 0, "PCMA": 8}
TELEPHONE_EVENT_PT = 101
DIRECTION_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
VIDEO_PROFILES = ("RTP/AVP", "RTP/AVPF")
_SECTION_SPLIT = re.compile(r"\r?\n(?=m=)")


@dataclass
class _Negotiated:
    codec: AudioCodec | None
    telephone_event: int | None
    remote: tuple[str, int] | None
    direction: str
    #: where the peer takes RTCP when it says (a=rtcp, a=rtcp-mux); else the port above its RTP port
    remote_rtcp: tuple[str, int] | None = None


def _media_codecs(media: MediaDescription) -> list[AudioCodec]:
    """Offered audio codecs in the offer's order, static payload types included even without rtpmap."""
    mapped = {c.payloadType: c for c in media.rtp.codecs}
    codecs = []
    for fmt in media.fmt:
        try:
            pt = int(fmt)
        except ValueError:
            continue
        codec = mapped.get(pt)
        if codec is not None:
            codecs.append(AudioCodec(codec.name, codec.clockRate, pt, codec.channels or 1))
        elif pt in STATIC_AUDIO_PAYLOAD_TYPES:
            name, clock = STATIC_AUDIO_PAYLOAD_TYPES[pt]
            codecs.append(AudioCodec(name, clock, pt))
    return codecs


def _choose(codecs: list[AudioCodec]) -> AudioCodec | None:
    for name in AUDIO_PREFERENCE:
        for codec in codecs:
            if codec.name.lower() == name.lower():
                return codec
    return None


def _telephone_event(codecs: list[AudioCodec]) -> int | None:
    return next((c.payload_type for c in codecs if c.name.lower() == "telephone-event" and c.clock_rate == 8000), None)


def _remote_of(description: SessionDescription, media: MediaDescription) -> tuple[str, int] | None:
    return sdp.media_destination(media.host or description.host, media.port)


class RtpLeg(EventEmitter, asyncio.DatagramProtocol):
    """Events: ``dtmf`` (digit), ``picture_fast_update`` () (ask the peer for a keyframe in signalling)."""

    kind = "rtp"

    def __init__(
        self,
        participant_id: str,
        settings: MediaSettings,
        ports: PortAllocator | None,
        video_codecs: tuple[str, ...] = (),
        max_received_video: int = 0,
    ) -> None:
        EventEmitter.__init__(self)
        self.participant_id = participant_id
        self.settings = settings
        self.ports = ports
        self.address = settings.addresses()[0]
        #: video codecs in order of preference; empty: every video stream is refused
        self.video_codecs = tuple(name.upper() for name in video_codecs)
        self.max_received_video = max_received_video
        self.inbox = AudioInbox()
        self.audio_codec: AudioCodec | None = None
        #: video streams by m-line index
        self.video_streams: dict[int, RtpVideoStream] = {}
        self.telephone_event: int | None = None
        self.remote: tuple[str, int] | None = None
        self.direction = "sendrecv"
        self.latched = False
        #: time.monotonic() of the last RTP packet on the audio socket (None: none yet), for whoever watches for a
        #: peer that went silent; a timestamp per packet rather than a timer, which would be rearmed 50 times a second
        self.last_received_at: float | None = None
        #: the audio the peer sends (packets, loss, jitter) and the mix we send it, for RTCP and the call quality
        self.inbound = InboundStream(8000)
        self.outbound = OutboundAudio()
        #: what the peer's link takes (its receiver reports tell), and the pacer its video goes through
        self.pacer = Pacer(BandwidthEstimate())
        self.pacer.estimate.throughput_bound = False  # no RTX to probe with: loss alone tells
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        #: where the peer's RTCP came from, and whether on the RTP port (multiplexed): our reports go back there
        self._rtcp_latched: tuple[tuple[str, int], bool] | None = None
        self._remote_rtcp: tuple[str, int] | None = None
        self._rtcp_task: asyncio.Task[None] | None = None
        self._dtmf = DtmfReceiver()
        self._extensions = HeaderExtensionsMap()
        self._ssrc = random.getrandbits(32)
        self.rtcp = AudioRtcp(self._ssrc, self.inbound, self.outbound)
        #: what the video streams closed so far counted
        self._closed_video = MediaCounters()
        self._sequence = random.getrandbits(15)
        self._timestamp = random.getrandbits(32)
        self._session_id = int(time.time() * 1000)
        self._version = 0
        self._closed = False
        #: SDES-SRTP of the audio stream when the peer offered RTP/SAVP (None: plain RTP)
        self._srtp: SrtpContext | None = None

    @property
    def packets_received(self) -> int:
        return self.inbound.packets

    @property
    def packets_sent(self) -> int:
        return self.outbound.packets

    @property
    def receives_audio(self) -> bool:
        """The negotiated audio lets the peer send to us (not inactive, not holding us in sendonly from our side)."""
        return self.audio_codec is not None and self.direction in ("sendrecv", "recvonly")

    # video, as the room sees it

    @property
    def video_sources(self) -> list[VideoSource]:
        """What the peer sends us, one source per received stream, in m-line order."""
        return [s.source for _, s in sorted(self.video_streams.items()) if s.source is not None]

    @property
    def video_source(self) -> VideoSource | None:
        sources = self.video_sources
        return sources[0] if sources else None

    @property
    def slots(self) -> list[VideoSlot]:
        """The one stream we send (the current speaker), if any."""
        return [s.slot for _, s in sorted(self.video_streams.items()) if s.slot is not None]

    # socket

    async def _open(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        rtp, rtcp = self.ports.bind_pair(self.address) if self.ports is not None else bind_rtp_pair(self.address)
        await loop.create_datagram_endpoint(lambda: self, sock=rtp)
        transport, _ = await loop.create_datagram_endpoint(lambda: RtcpSocket(self._on_rtcp_port), sock=rtcp)
        self._rtcp_transport = cast(asyncio.DatagramTransport, transport)
        self._rtcp_task = loop.create_task(self.rtcp.run(self._send_rtcp))

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return  # not RTP
        if 192 <= data[1] <= 223:
            self._rtcp_received(data, addr, multiplexed=True)  # RFC 5761
            return
        if self._srtp is not None:
            clear = self._srtp.unprotect(data)
            if clear is None:
                return  # forged, replayed or damaged: neither heard nor latched on
            data = clear
        level: int | None = None
        if data[0] == 0x80:
            # the usual phone packet (no padding, extension or CSRC): read the header directly, 5 times cheaper
            _, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
            payload_type = second & 0x7F
            payload = data[12:]
        else:
            try:
                packet = RtpPacket.parse(data, self._extensions)
            except ValueError:
                return
            payload_type, timestamp, payload = packet.payload_type, packet.timestamp, packet.payload
            sequence, ssrc = packet.sequence_number, packet.ssrc
            audio_level = packet.extensions.audio_level
            level = None if audio_level is None else audio_level[1]
        arrival = self.last_received_at = time.monotonic()
        self.inbound.add(ssrc, sequence, timestamp, arrival, len(payload))
        if not self.latched or self.remote != addr:
            # symmetric RTP: answer where the media comes from
            self.remote = (addr[0], addr[1])
            self.latched = True
        codec = self.audio_codec
        if payload_type == self.telephone_event:
            digit = self._dtmf.feed(payload, timestamp)
            if digit is not None:
                self.emit("dtmf", digit)
        elif codec is not None and payload_type == codec.payload_type and payload:
            self.inbox.push(InboundAudio(codec, payload, timestamp, level))

    def send_audio(self, payloads: list[bytes]) -> None:
        codec = self.audio_codec
        if (
            codec is None
            or self._transport is None
            or self.remote is None
            or self.direction in ("recvonly", "inactive")
        ):
            return
        srtp = self._srtp
        outbound = self.outbound
        for payload in payloads:
            header = _HEADER.pack(0x80, codec.payload_type, self._sequence, self._timestamp, self._ssrc)
            packet = header + payload
            self._transport.sendto(srtp.protect(packet) if srtp is not None else packet, self.remote)
            self.pacer.charge(len(packet))
            outbound.packets += 1
            outbound.octets += len(payload)
            outbound.timestamp = self._timestamp
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._timestamp = (self._timestamp + codec.samples_per_packet) & 0xFFFFFFFF
        if payloads:
            outbound.sent_at = time.monotonic()

    # RTCP (sfu/audiortcp.py)

    def _on_rtcp_port(self, data: bytes, addr: tuple[str, int]) -> None:
        self._rtcp_received(data, addr, multiplexed=False)

    def _rtcp_received(self, data: bytes, addr: tuple[str, int], *, multiplexed: bool) -> None:
        if len(data) < 8 or data[0] >> 6 != 2:
            return
        if self.remote is not None and addr[0] != self.remote[0]:
            return  # only the peer's host speaks RTCP for this stream
        if self._srtp is not None:
            clear = self._srtp.unprotect_rtcp(data)
            if clear is None:
                return
            data = clear
        self._rtcp_latched = ((addr[0], addr[1]), multiplexed)
        self.rtcp.received(data, time.time(), time.monotonic())

    def _send_rtcp(self, data: bytes) -> None:
        latched = self._rtcp_latched
        if latched is not None:
            destination, multiplexed = latched
        elif self._remote_rtcp is not None:
            destination, multiplexed = self._remote_rtcp, self._remote_rtcp == self.remote
        elif self.remote is not None:
            destination, multiplexed = (self.remote[0], self.remote[1] + 1), False
        else:
            return
        transport = self._transport if multiplexed else self._rtcp_transport
        if transport is None or transport.is_closing() or self.direction == "inactive":
            return
        transport.sendto(self._srtp.protect_rtcp(data) if self._srtp is not None else data, destination)

    # negotiation

    async def answer(self, offer: str) -> str:
        """Answer an offer: the first usable audio stream, video streams as the module says, the rest refused."""
        self._check_open()
        description = sdp.parse(offer)
        await self._open()
        lines: list[str] = []
        accepted = False
        sections = _SECTION_SPLIT.split(offer)[1:]  # each m-line's text, for what aiortc's parser drops (a=crypto)
        crypto_of = [
            sdes.offered(sections[index]) if media.profile == "RTP/SAVP" and index < len(sections) else []
            for index, media in enumerate(description.media)
        ]
        sending = self._sending_index(description, crypto_of)
        receiving = 0
        for index, media in enumerate(description.media):
            if not accepted and media.kind == "audio" and media.port != 0 and self._audio_profile_ok(media.profile):
                negotiated = self._negotiate(description, media, _media_codecs(media))
                crypto = crypto_of[index]
                if negotiated.codec is not None and (media.profile != "RTP/SAVP" or crypto):
                    accepted = True
                    self._apply(negotiated)
                    lines += self._audio_section(
                        media.profile, negotiated.codec, negotiated.telephone_event, negotiated.direction
                    )
                    if crypto:
                        ours = sdes.answer_for(crypto[0])
                        self._srtp = SrtpContext(ours, crypto[0])
                        lines.append(ours.line())
                    else:
                        self._srtp = None
                    continue
            if media.kind == "video" and self._usable_video(media, crypto_of[index]):
                peer_sends = (media.direction or "sendrecv") in ("sendrecv", "sendonly")
                send = index == sending
                # the stream we send on also carries what the peer sends there, without counting against the limit
                receive = peer_sends and (send or receiving < self.max_received_video)
                if send or receive:
                    if receive and not send:
                        receiving += 1
                    codec = offered_video_codecs(media, self.video_codecs)[0]
                    lines += await self._video_section(
                        index, description, media, codec, send, receive, crypto_of[index]
                    )
                    continue
            await self._close_video(index)
            lines += [f"m={media.kind} 0 {media.profile} {' '.join(str(f) for f in media.fmt) or '0'}"]
        for index in [i for i in self.video_streams if i >= len(description.media)]:
            await self._close_video(index)
        if not accepted and not self.audio_codec:
            profiles = "RTP/SAVP with a=crypto" if not self.settings.allow_plain_rtp else "RTP/AVP or RTP/SAVP"
            raise SdpError(f"no usable audio stream in the offer (opus, G722, PCMU or PCMA over {profiles})")
        return self._session(lines)

    async def handle_offer(self, offer: str) -> str:
        """A re-offer (re-INVITE): same rules; streams that cannot be forwarded are refused, the call goes on."""
        return await self.answer(offer)

    async def create_offer(self) -> str:
        """Offer audio (opus, G722, PCMU, PCMA, telephone-event), and one sendrecv video stream in a room with video,
        for an outbound leg; then `accept_answer`."""
        self._check_open()
        await self._open()
        pts = " ".join(str(OFFER_PAYLOAD_TYPES[name]) for name in AUDIO_PREFERENCE)
        lines = [f"m=audio {self.local_port} RTP/AVP {pts} {TELEPHONE_EVENT_PT}"]
        for name in AUDIO_PREFERENCE:
            clock, channels = AUDIO_CODECS[name]
            lines.append(
                f"a=rtpmap:{OFFER_PAYLOAD_TYPES[name]} {name}/{clock}" + (f"/{channels}" if channels > 1 else "")
            )
        lines += [f"a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000", f"a=fmtp:{TELEPHONE_EVENT_PT} 0-16"]
        lines += ["a=ptime:20", "a=sendrecv"]
        codecs = [
            VideoCodec(name, VIDEO_PAYLOAD_TYPES[name]) for name in self.video_codecs if name in VIDEO_PAYLOAD_TYPES
        ]
        if codecs:
            stream = await self._video_stream(1)
            lines.append(f"m=video {stream.local_port} RTP/AVP {' '.join(str(c.payload_type) for c in codecs)}")
            for codec in codecs:
                lines += codec.sdp_lines()
            lines += [f"a=rtcp:{stream.local_port + 1}", "a=sendrecv"]
        return self._session(lines)

    async def accept_answer(self, answer: str) -> None:
        """Apply the answer to `create_offer`."""
        self._check_open()
        description = sdp.parse(answer)
        media = next((m for m in description.media if m.kind == "audio" and m.port != 0), None)
        if media is None:
            raise SdpError("the answer refused audio")
        codecs = _media_codecs(media)
        negotiated = self._negotiate(description, media, codecs)
        # the answerer's first format is the one it sends
        first = next((c for c in codecs if is_supported_audio(c.name)), None)
        if first is None:
            raise SdpError("the answer has no usable audio codec")
        negotiated.codec = first
        negotiated.direction = DIRECTION_REVERSE.get(media.direction or "sendrecv", "sendrecv")
        self._apply(negotiated)
        for index, stream in list(self.video_streams.items()):
            answered = description.media[index] if index < len(description.media) else None
            if answered is None or answered.kind != "video" or not self._usable_video(answered):
                await self._close_video(index)
                continue
            # the answerer's first usable format is the one it sends
            usable = {str(c.payload_type): c for c in offered_video_codecs(answered, self.video_codecs)}
            codec = next(usable[str(f)] for f in answered.fmt if str(f) in usable)
            ours = DIRECTION_REVERSE.get(answered.direction or "sendrecv", "sendrecv")
            self._configure_video(
                stream, description, answered, codec, ours in ("sendrecv", "sendonly"), ours in ("sendrecv", "recvonly")
            )

    def _negotiate(
        self, description: SessionDescription, media: MediaDescription, codecs: list[AudioCodec]
    ) -> _Negotiated:
        direction = DIRECTION_REVERSE.get(media.direction or "sendrecv", "sendrecv")
        remote = _remote_of(description, media)
        remote_rtcp = remote if media.rtcp_mux else None
        if media.rtcp_port:
            remote_rtcp = sdp.media_destination(media.rtcp_host or media.host or description.host, media.rtcp_port)
        return _Negotiated(_choose(codecs), _telephone_event(codecs), remote, direction, remote_rtcp)

    def _apply(self, negotiated: _Negotiated) -> None:
        self.audio_codec = negotiated.codec
        self.telephone_event = negotiated.telephone_event
        self.direction = negotiated.direction
        codec = negotiated.codec
        if codec is not None:
            self.outbound.clock_rate = codec.clock_rate
            if codec.clock_rate != self.inbound.clock_rate:
                self.inbound.restart(codec.clock_rate)
        if negotiated.remote is not None:
            if negotiated.remote != self.remote:
                self.remote = negotiated.remote
                self.latched = False
                self._rtcp_latched = None
            self._remote_rtcp = negotiated.remote_rtcp

    # video

    def _usable_video(self, media: MediaDescription, crypto: list[sdes.CryptoAttribute] | None = None) -> bool:
        plain = media.profile in VIDEO_PROFILES and self.settings.allow_plain_rtp
        return (
            media.port != 0
            and (plain or (media.profile == "RTP/SAVP" and bool(crypto)))
            and bool(self.video_codecs)
            and bool(offered_video_codecs(media, self.video_codecs))
        )

    def _sending_index(
        self, description: SessionDescription, crypto_of: list[list[sdes.CryptoAttribute]]
    ) -> int | None:
        """The m-line we send the speaker's video on: the one we send on already if it still can, else the first."""
        able = [
            index
            for index, media in enumerate(description.media)
            if media.kind == "video"
            and self._usable_video(media, crypto_of[index])
            and (media.direction or "sendrecv") in ("sendrecv", "recvonly")
        ]
        current = next((index for index, stream in self.video_streams.items() if stream.sends), None)
        if current in able:
            return current
        return able[0] if able else None

    async def _video_stream(self, index: int) -> RtpVideoStream:
        stream = self.video_streams.get(index)
        if stream is None:
            stream = RtpVideoStream(
                self.participant_id,
                self.address,
                self.ports,
                lambda: self.emit("picture_fast_update"),
                pacer=self.pacer,
            )
            self.video_streams[index] = stream
            try:
                await stream.open()
            except BaseException:
                self.video_streams.pop(index, None)
                await stream.close()
                raise
        return stream

    def _configure_video(
        self,
        stream: RtpVideoStream,
        description: SessionDescription,
        media: MediaDescription,
        codec: VideoCodec,
        send: bool,
        receive: bool,
    ) -> None:
        remote_rtcp = None
        if media.rtcp_port:
            remote_rtcp = sdp.media_destination(media.rtcp_host or media.host or description.host, media.rtcp_port)
        stream.configure(
            codec,
            send=send,
            receive=receive,
            remote=_remote_of(description, media),
            remote_rtcp=remote_rtcp,
            rtcp_mux=media.rtcp_mux,
        )

    async def _video_section(
        self,
        index: int,
        description: SessionDescription,
        media: MediaDescription,
        codec: VideoCodec,
        send: bool,
        receive: bool,
        crypto: list[sdes.CryptoAttribute] | None = None,
    ) -> list[str]:
        stream = await self._video_stream(index)
        self._configure_video(stream, description, media, codec, send, receive)
        port = stream.local_port
        lines = [f"m=video {port} {media.profile} {codec.payload_type}", *codec.sdp_lines()]
        lines.append("a=rtcp-mux" if media.rtcp_mux else f"a=rtcp:{port + 1}")
        lines.append(f"a={stream.direction}")
        if crypto:
            ours = sdes.answer_for(crypto[0])
            stream.path.srtp = SrtpContext(ours, crypto[0])
            lines.append(ours.line())
        else:
            stream.path.srtp = None
        return lines

    async def _close_video(self, index: int) -> None:
        stream = self.video_streams.pop(index, None)
        if stream is not None:
            stream.count_into(self._closed_video)
            await stream.close()

    def _audio_profile_ok(self, profile: str) -> bool:
        """RTP/SAVP (SDES-SRTP) always; plain RTP/AVP(F) where the operator allows it."""
        return profile == "RTP/SAVP" or (profile.startswith("RTP/AVP") and self.settings.allow_plain_rtp)

    def _audio_section(self, profile: str, codec: AudioCodec, telephone_event: int | None, direction: str) -> list[str]:
        formats = f"{codec.payload_type}" + (f" {telephone_event}" if telephone_event is not None else "")
        lines = [f"m=audio {self.local_port} {profile} {formats}"]
        lines.append(
            f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}"
            + (f"/{codec.channels}" if codec.channels > 1 else "")
        )
        if telephone_event is not None:
            lines += [f"a=rtpmap:{telephone_event} telephone-event/8000", f"a=fmtp:{telephone_event} 0-16"]
        lines += ["a=ptime:20", f"a={direction}"]
        return lines

    def _session(self, media_lines: list[str]) -> str:
        self._version += 1
        announced = self.settings.public_address or self.address
        family = "IP6" if ":" in announced else "IP4"
        head = [
            "v=0",
            f"o=- {self._session_id} {self._version} IN {family} {announced}",
            "s=-",
            f"c=IN {family} {announced}",
            "t=0 0",
        ]
        return "\r\n".join(head + media_lines) + "\r\n"

    # call quality

    def media_counters(self) -> MediaCounters:
        counters = MediaCounters(
            audio_packets_in=self.inbound.packets,
            audio_bytes_in=self.inbound.octets,
            audio_lost_in=self.inbound.lost,
            audio_packets_out=self.outbound.packets,
            audio_bytes_out=self.outbound.octets,
        )
        if self.rtcp.report is not None:
            counters.audio_lost_out = self.rtcp.report.packets_lost
        counters.add(self._closed_video)
        for stream in self.video_streams.values():
            stream.count_into(counters)
        return counters

    async def link_state(self) -> LinkState:
        """The figures of `media_counters`, with what the peer's RTCP reported and the video resolutions."""
        state = LinkState(self.media_counters(), round_trip_time=self.rtcp.round_trip_time)
        if self.rtcp.report is not None:
            state.reports["audio"] = self.rtcp.report
        if (jitter := self.inbound.jitter) is not None:
            state.jitter_in["audio"] = jitter
        jitters = [j for stream in self.video_streams.values() if (j := stream.inbound.jitter) is not None]
        if jitters:
            state.jitter_in["video"] = max(jitters)
        add_video_figures(state, self.video_sources, self.slots)
        return state

    # lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ParticipantClosed("the leg is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pacer.close()
        for index in list(self.video_streams):
            await self._close_video(index)
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            await asyncio.gather(self._rtcp_task, return_exceptions=True)
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = self._rtcp_transport = None
        self.remove_all_listeners()
