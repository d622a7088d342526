"""Test peers built on real libraries: aiortc browsers-alike, and a plain-RTP phone on a UDP socket."""

from __future__ import annotations

import asyncio
import base64
import fractions
import math
import os
import random
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import av
import numpy as np
import pylibsrtp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av.frame import Frame

from sfu import Participant, Room
from sfu.aiortc_adapter import gather_host_candidates
from sfu.ports import PortAllocator
from tests.waiting import until

RATE = 48000
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (220, 220, 30),
    "magenta": (220, 30, 220),
}


class ToneTrack(AudioStreamTrack):
    """A sine tone (or silence), 20 ms frames of 48 kHz mono, paced in real time."""

    def __init__(self, frequency: float | None, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._sample = 0
        self._start: float | None = None

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = 960
        if self._start is None:
            self._start = time.time()
        else:
            wait = self._start + self._sample / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (self._sample + np.arange(samples)) / RATE
        if self.frequency is None:
            data = np.zeros(samples, dtype=np.int16)
        else:
            data = (np.sin(2 * math.pi * self.frequency * t) * self.amplitude * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sample
        frame.time_base = fractions.Fraction(1, RATE)
        self._sample += samples
        return frame


class ColourTrack(VideoStreamTrack):
    """Solid-colour 160x120 frames at 15 fps."""

    def __init__(self, colour: str) -> None:
        super().__init__()
        r, g, b = COLOURS[colour]
        image = np.zeros((120, 160, 3), dtype=np.uint8)
        image[:, :] = (r, g, b)
        self._image = image

    async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += 6000
            wait = self._start + (self._timestamp / 90000) - time.time()
            await asyncio.sleep(max(0.0, wait))
        else:
            self._start = time.time()
            self._timestamp = 0
        return self._timestamp, fractions.Fraction(1, 90000)

    async def recv(self) -> Frame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


def nearest_colour(frame: av.VideoFrame) -> str:
    rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: float(np.sum((np.array(COLOURS[name]) - rgb) ** 2)))


def tone_power(samples: np.ndarray, frequency: float, rate: int = RATE) -> float:
    """Fraction of the signal's energy within +-20 Hz of `frequency`."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > frequency - 20) & (freqs < frequency + 20)
    total = spectrum.sum()
    return float(spectrum[band].sum() / total) if total > 0 else 0.0


class WebRtcClient:
    """A browser-alike: sends a tone and a coloured picture, records what it receives.

    Bundle policy max-bundle by default: with aiortc's default ("balanced"), an aiortc peer whose first offer had
    no video answers the server's slot re-offer with the second and later video m-lines on a transport of their
    own that it never starts (aiortc 1.16 bug; see test_audio_only_first_offer_keeps_audio_after_slots): those
    slots would receive nothing. Browsers bundle every m-line of the BUNDLE group, as max-bundle does here.
    """

    def __init__(
        self,
        name: str,
        tone: float | None,
        colour: str | None,
        bundle_policy: RTCBundlePolicy = RTCBundlePolicy.MAX_BUNDLE,
        address: str = "127.0.0.1",
        ports: PortAllocator | None = None,
    ) -> None:
        """`address` is where its ICE host candidate is; `ports` binds its socket (e.g. in a network namespace)."""
        self.name = name
        self.address = address
        self.ports = ports
        self.bundle_policy = bundle_policy
        self.tone = tone
        self.colour = colour
        self.pc = self._new_connection()
        self.audio: list[np.ndarray] = []
        self.recording = False
        #: colours seen per received video track id, in arrival order
        self.video: dict[str, list[str]] = {}
        self.participant: Participant | None = None
        #: the server's offers of slots, as it sent them
        self.offers: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _new_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=self.bundle_policy))
        pc.addTrack(ToneTrack(self.tone))
        if self.colour is not None:
            pc.addTrack(ColourTrack(self.colour))
        pc.on("track", self._on_track)
        return pc

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    if self.recording:
                        data = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                        self.audio.append(data.copy())
                elif isinstance(frame, av.VideoFrame):
                    self.video.setdefault(track.id, []).append(nearest_colour(frame))
        except MediaStreamError:
            pass

    async def join(self, room: Room, **kwargs: Any) -> Participant:
        gather_host_candidates(self.pc, [self.address], self.ports)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        participant, answer = await room.join_webrtc(self.pc.localDescription.sdp, {"name": self.name}, **kwargs)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.participant = participant
        return participant

    async def accept_slots(self) -> None:
        """Take the server's offer of slots (new ones, or ones announced afresh), as the gateway's re-INVITE brings
        it; nothing when it has none to make."""
        assert self.participant is not None
        if not self.participant.wants_offer:
            return
        offer = await self.participant.create_slots_offer()
        self.offers.append(offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        gather_host_candidates(self.pc, [self.address], self.ports)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.participant.accept_slots_answer(self.pc.localDescription.sdp)

    async def restart(self) -> None:
        """Go on with a new peer connection sending the same tracks, the old one closed: what this peer can do where a
        browser restarts ICE and makes a new DTLS association (aiortc does neither on a live connection). The
        pictures received so far are forgotten. (New tracks: aiortc stops a sender's track when its connection
        fails.)"""
        old, self.pc = self.pc, self._new_connection()
        await old.close()
        self.video.clear()

    def recorded(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)

    def colours_seen(self, last: int = 5) -> set[str]:
        """The colour each received video track shows now (from its last frames)."""
        seen = set()
        for colours in self.video.values():
            if colours:
                seen.add(max(set(colours[-last:]), key=colours[-last:].count))
        return seen

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


MULAW_DECODE = None


class RtpPhone(asyncio.DatagramProtocol):
    """A SIP phone's media side: PCMU over plain RTP on a UDP socket, with RFC 4733 digits."""

    def __init__(self, tone: float | None) -> None:
        self.tone = tone
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []
        self.remote: tuple[str, int] | None = None
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(15)
        self.ts = random.getrandbits(31)
        self._task: asyncio.Task[None] | None = None
        self._encoder = av.CodecContext.create("pcm_mulaw", "w")
        self._encoder.format = "s16"
        self._encoder.layout = "mono"
        self._encoder.sample_rate = 8000
        self._encoder.time_base = fractions.Fraction(1, 8000)
        self._sample = 0

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[1] & 0x7F == 0:
            self.received.append(data[12:])

    def offer(self, video: bool = False) -> str:
        lines = [
            "v=0",
            "o=phone 1 1 IN IP4 127.0.0.1",
            "s=call",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            f"m=audio {self.port} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
        ]
        if video:
            lines += [f"m=video {self.port + 2} RTP/AVP 96", "a=rtpmap:96 VP8/90000", "a=sendrecv"]
        return "\r\n".join(lines) + "\r\n"

    def start(self, remote: tuple[str, int]) -> None:
        self.remote = remote
        self._task = asyncio.ensure_future(self._send_loop())

    def pause(self) -> None:
        """Stop sending and keep receiving (a phone on hold); `start` sends again."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _payload(self) -> bytes:
        t = (self._sample + np.arange(160)) / 8000
        self._sample += 160
        if self.tone is None:
            data = np.zeros(160, dtype=np.int16)
        else:
            data = (np.sin(2 * math.pi * self.tone * t) * 0.3 * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        return b"".join(bytes(p) for p in self._encoder.encode(frame))

    def _send(self, payload_type: int, payload: bytes, marker: int = 0, advance: bool = True) -> None:
        assert self.transport is not None and self.remote is not None
        header = struct.pack("!BBHII", 0x80, (marker << 7) | payload_type, self.seq, self.ts, self.ssrc)
        self.transport.sendto(self._wire(header + payload), self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        if advance:
            self.ts = (self.ts + 160) & 0xFFFFFFFF

    async def _send_loop(self) -> None:
        start = time.time()
        n = 0
        while True:
            self._send(0, self._payload())
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.time()))

    def _wire(self, packet: bytes) -> bytes:
        """The packet as it goes on the wire (plain RTP here)."""
        return packet

    def send_digit(self, digit: int) -> None:
        """RFC 4733: three packets for the event, the last three with the end bit (same timestamp)."""
        for i in range(3):
            self._send(101, struct.pack("!BBH", digit, 10, 160 * (i + 1)), marker=int(i == 0), advance=False)
        for _ in range(3):
            self._send(101, struct.pack("!BBH", digit, 0x80 | 10, 640), advance=False)
        self.ts = (self.ts + 640) & 0xFFFFFFFF

    def decoded(self) -> np.ndarray:
        decoder = av.CodecContext.create("pcm_mulaw", "r")
        decoder.format = "s16"
        decoder.layout = "mono"
        decoder.sample_rate = 8000
        out = []
        for payload in self.received:
            for frame in decoder.decode(av.Packet(payload)):
                out.append(frame.to_ndarray().reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.transport is not None:
            self.transport.close()


@asynccontextmanager
async def speaker_and_two_viewers(room: Room) -> AsyncIterator[tuple[WebRtcClient, WebRtcClient, WebRtcClient]]:
    """A, talking (440 Hz) with a red camera, and B (blue) and C (green), silent, in `room`, their slots accepted and
    C's first slot showing A; all three closed at the end."""
    a, b, c = WebRtcClient("A", 440, "red"), WebRtcClient("B", None, "blue"), WebRtcClient("C", None, "green")
    try:
        for client in (a, b, c):
            await client.join(room)
        for client in (a, b, c):
            await client.accept_slots()
        deadline = time.monotonic() + 8
        while c.colours_seen() != {"red"}:
            assert time.monotonic() < deadline, f"C's slot does not show the speaker: {c.colours_seen()}"
            await asyncio.sleep(0.05)
        yield a, b, c
    finally:
        for client in (a, b, c):
            await client.close()


def open_sockets() -> int:
    """UDP/TCP sockets this process holds (from /proc/self/fd)."""
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


__all__ = ["RtpPhone", "WebRtcClient", "nearest_colour", "open_sockets", "socket", "tone_power"]


class SrtpPhone(RtpPhone):
    """A phone that encrypts (SDES-SRTP, RFC 4568): offers RTP/SAVP with a key of its own, takes the answer's key.

    Written apart from sfu/sdes.py, straight on pylibsrtp, so that it checks the server rather than repeats it."""

    SUITE = "AES_CM_128_HMAC_SHA1_80"

    def __init__(self, tone: float | None) -> None:
        super().__init__(tone)
        self.key = os.urandom(30)
        self._tx: pylibsrtp.Session | None = None
        self._rx: pylibsrtp.Session | None = None
        self.rejected = 0

    def offer(self, video: bool = False) -> str:
        plain = super().offer(video)
        crypto = f"a=crypto:1 {self.SUITE} inline:{base64.b64encode(self.key).decode()}|2^31"
        return plain.replace(" RTP/AVP ", " RTP/SAVP ").replace("a=sendrecv\r\n", f"a=sendrecv\r\n{crypto}\r\n", 1)

    def accept(self, answer: str) -> None:
        line = next(line for line in answer.splitlines() if line.startswith("a=crypto:"))
        tag, suite, params = line[len("a=crypto:") :].split(" ", 2)
        assert tag == "1" and suite == self.SUITE, line
        theirs = base64.b64decode(params.removeprefix("inline:").split("|")[0])
        profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
        self._tx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=self.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        )
        self._rx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._rx is None:
            return
        try:
            clear = bytes(self._rx.unprotect(data))
        except pylibsrtp.Error:
            self.rejected += 1
            return
        super().datagram_received(clear, addr)

    def _wire(self, packet: bytes) -> bytes:
        assert self._tx is not None, "accept() the answer first"
        return bytes(self._tx.protect(packet))


async def record(*clients: WebRtcClient, seconds: float = 1.5) -> None:
    """Keep what each client hears until each holds `seconds` of audio. A loaded machine decodes slower than real
    time, so a wall-clock window alone would come back short; fail after four times as long."""
    for client in clients:
        client.audio.clear()
        client.recording = True
    wanted = int(seconds * RATE)
    try:
        await until(lambda: all(len(client.recorded()) >= wanted for client in clients), 4 * seconds, "audio")
    finally:
        for client in clients:
            client.recording = False
