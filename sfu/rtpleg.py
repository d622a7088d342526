"""A plain-RTP leg (RTP/AVP) for SIP phones and Asterisk: one UDP socket, symmetric RTP, RFC 4733 digits.

Audio only for now: video m-lines in offers and re-offers are refused with port 0 (the call never fails on them).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from dataclasses import dataclass
from typing import cast

from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from aiortc.sdp import MediaDescription, SessionDescription

from . import sdp
from .codecs import AUDIO_CODECS, STATIC_AUDIO_PAYLOAD_TYPES, AudioCodec, is_supported_audio
from .dtmf import DtmfReceiver
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox, InboundAudio
from .ports import PortAllocator
from .settings import MediaSettings

logger = logging.getLogger(__name__)

#: RTP fixed header (RFC 3550 section 5.1): V=2, no padding, extension or CSRC; marker off
_HEADER = struct.Struct("!BBHII")
_TIMESTAMP = struct.Struct("!I")

#: codecs in order of preference when answering, and the payload types used when offering
AUDIO_PREFERENCE = ("opus", "G722", "PCMU", "PCMA")
OFFER_PAYLOAD_TYPES = {"opus": 111, "G722": 9, "PCMU": 0, "PCMA": 8}
TELEPHONE_EVENT_PT = 101
DIRECTION_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


@dataclass
class _Negotiated:
    codec: AudioCodec | None
    telephone_event: int | None
    remote: tuple[str, int] | None
    direction: str


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


class RtpLeg(EventEmitter, asyncio.DatagramProtocol):
    """Events: ``dtmf`` (digit)."""

    kind = "rtp"

    def __init__(self, participant_id: str, settings: MediaSettings, ports: PortAllocator | None) -> None:
        EventEmitter.__init__(self)
        self.participant_id = participant_id
        self.settings = settings
        self.ports = ports
        self.address = settings.addresses()[0]
        self.inbox = AudioInbox()
        self.audio_codec: AudioCodec | None = None
        self.video_source: VideoSource | None = None
        self.slots: list[VideoSlot] = []
        self.telephone_event: int | None = None
        self.remote: tuple[str, int] | None = None
        self.direction = "sendrecv"
        self.latched = False
        self.packets_received = 0
        self.packets_sent = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._dtmf = DtmfReceiver()
        self._extensions = HeaderExtensionsMap()
        self._ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(15)
        self._timestamp = random.getrandbits(32)
        self._session_id = int(time.time() * 1000)
        self._version = 0
        self._closed = False

    # socket

    async def _open(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        if self.ports is not None:
            sock = self.ports.bind(self.address, even=True)
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        else:
            await loop.create_datagram_endpoint(lambda: self, local_addr=(self.address, 0))

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
            return  # not RTP, or RTCP: ignored
        level: int | None = None
        if data[0] == 0x80:
            # the usual phone packet (no padding, extension or CSRC): read the header directly, 5 times cheaper
            payload_type = data[1] & 0x7F
            timestamp = _TIMESTAMP.unpack_from(data, 4)[0]
            payload = data[12:]
        else:
            try:
                packet = RtpPacket.parse(data, self._extensions)
            except ValueError:
                return
            payload_type, timestamp, payload = packet.payload_type, packet.timestamp, packet.payload
            audio_level = packet.extensions.audio_level
            level = None if audio_level is None else audio_level[1]
        self.packets_received += 1
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
        for payload in payloads:
            header = _HEADER.pack(0x80, codec.payload_type, self._sequence, self._timestamp, self._ssrc)
            self._transport.sendto(header + payload, self.remote)
            self.packets_sent += 1
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._timestamp = (self._timestamp + codec.samples_per_packet) & 0xFFFFFFFF

    # negotiation

    async def answer(self, offer: str) -> str:
        """Answer a phone's offer: the first usable audio stream is accepted, everything else refused (port 0)."""
        self._check_open()
        description = sdp.parse(offer)
        await self._open()
        lines: list[str] = []
        accepted = False
        for media in description.media:
            if not accepted and media.kind == "audio" and media.port != 0 and media.profile.startswith("RTP/AVP"):
                negotiated = self._negotiate(description, media, _media_codecs(media))
                if negotiated.codec is not None:
                    accepted = True
                    self._apply(negotiated)
                    lines += self._audio_section(
                        media.profile, negotiated.codec, negotiated.telephone_event, negotiated.direction
                    )
                    continue
            lines += [f"m={media.kind} 0 {media.profile} {' '.join(str(f) for f in media.fmt) or '0'}"]
        if not accepted and not self.audio_codec:
            raise SdpError("no usable audio stream in the offer (opus, G722, PCMU or PCMA over RTP/AVP)")
        return self._session(lines)

    async def handle_offer(self, offer: str) -> str:
        """A re-offer (re-INVITE): same rules; streams that cannot be forwarded are refused, the call goes on."""
        return await self.answer(offer)

    async def create_offer(self) -> str:
        """Offer audio (opus, G722, PCMU, PCMA, telephone-event) for an outbound leg; then `accept_answer`."""
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

    def _negotiate(
        self, description: SessionDescription, media: MediaDescription, codecs: list[AudioCodec]
    ) -> _Negotiated:
        host = media.host or description.host
        remote = (host, media.port) if host else None
        direction = DIRECTION_REVERSE.get(media.direction or "sendrecv", "sendrecv")
        return _Negotiated(_choose(codecs), _telephone_event(codecs), remote, direction)

    def _apply(self, negotiated: _Negotiated) -> None:
        self.audio_codec = negotiated.codec
        self.telephone_event = negotiated.telephone_event
        self.direction = negotiated.direction
        if negotiated.remote is not None and negotiated.remote[0] not in ("0.0.0.0", "::"):
            if negotiated.remote != self.remote:
                self.remote = negotiated.remote
                self.latched = False

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

    # lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ParticipantClosed("the leg is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.remove_all_listeners()
