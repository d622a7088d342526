"""The audio mixer: every 20 ms, mix the K loudest speakers; listeners share one encoded mix per codec.

Each member has an `AudioInbox` (filled by its leg with encoded packets and, when sent, the RFC 6464 level) and an
`AudioSink` (its leg's sending side, with the codec it negotiated). Per tick:

1. one packet is taken from each inbox; a packet whose RFC 6464 level says silence is never decoded; a packet
   without a level is decoded to measure its energy (cheap for G.711, the usual case of level-less phones);
2. the K loudest members above the speech level are decoded (if not already) and resampled to 48 kHz mono;
3. the mix of all K is encoded once per codec used by the listeners; each of the K speakers gets, in his codec,
   the mix minus himself. A lone speaker's packets go to the listeners of his codec as they came (the mix *is* his
   voice): nothing is decoded (when he sends levels) or encoded;
4. whoever hears nobody gets a cached encoded silence (Opus to WebRTC legs: one packet every 400 ms, as DTX).

Talking state (ConfBridge-style indicators, active speakers for video) is computed from the same levels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .codecs import MIX_SAMPLES, PTIME_MS, AudioCodec, AudioDecoder, AudioEncoder, g711_levels, level_dbov

logger = logging.getLogger(__name__)

#: packets kept per inbox before the oldest are dropped (bounds the added latency)
INBOX_DEPTH = 4
INBOX_TRIM_TO = 2
#: an encoder not used for this many ticks is released
ENCODER_IDLE_TICKS = 50
#: a WebRTC listener who hears nobody gets one Opus silence packet every this many ticks (400 ms, as Opus DTX does)
DTX_INTERVAL_TICKS = 20


@dataclass(slots=True)
class InboundAudio:
    codec: AudioCodec
    payload: bytes
    timestamp: int
    #: RFC 6464 level (0 loudest .. 127 silence) or None when the sender sends none
    level: int | None


class AudioInbox:
    """Encoded packets received from one member, waiting for the next tick."""

    def __init__(self) -> None:
        self.packets: deque[InboundAudio] = deque()
        self.received = 0
        self.dropped = 0

    def push(self, packet: InboundAudio) -> None:
        self.received += 1
        self.packets.append(packet)
        if len(self.packets) > INBOX_DEPTH:
            while len(self.packets) > INBOX_TRIM_TO:
                self.packets.popleft()
                self.dropped += 1

    def pop(self) -> InboundAudio | None:
        return self.packets.popleft() if self.packets else None


class AudioSink(Protocol):
    """A leg's sending side, as the mixer sees it.

    `send_audio` is called once per tick; with DTX (an attribute ``dtx`` that is true, for Opus) an empty list means
    "nothing to send this tick" and the stream's timestamp still advances by one packet.
    """

    @property
    def audio_codec(self) -> AudioCodec | None: ...

    def send_audio(self, payloads: list[bytes]) -> None: ...


class TalkDetector:
    """Hysteresis on per-tick speech: talking after `start_ticks` of speech, silent after `stop_ticks` without."""

    def __init__(self, start_ticks: int, stop_ticks: int) -> None:
        self.start_ticks = max(1, start_ticks)
        self.stop_ticks = max(1, stop_ticks)
        self.talking = False
        self._speech = 0
        self._silence = 0

    def observe(self, speech: bool) -> bool | None:
        """Feed one tick; returns the new state when it changes, else None."""
        if speech:
            self._speech += 1
            self._silence = 0
            if not self.talking and self._speech >= self.start_ticks:
                self.talking = True
                return True
        else:
            self._silence += 1
            if self._silence >= 2:
                self._speech = 0
            if self.talking and self._silence >= self.stop_ticks:
                self.talking = False
                return False
        return None


class MixerMember:
    def __init__(self, member_id: str, inbox: AudioInbox, sink: AudioSink, detector: TalkDetector) -> None:
        self.id = member_id
        self.inbox = inbox
        self.sink = sink
        self.detector = detector
        self.muted = False
        self.decoder: AudioDecoder | None = None
        #: ticks in which the member was decoded (for measurements)
        self.decoded = 0
        #: consecutive ticks in which the member heard nobody
        self.silent_ticks = 0

    def decode(self, packet: InboundAudio) -> np.ndarray:
        if self.decoder is None or self.decoder.codec.key != packet.codec.key:
            self.decoder = AudioDecoder(packet.codec)
        self.decoded += 1
        return self.decoder.decode(packet.payload, packet.timestamp)


def opus_frame_ms(payload: bytes) -> float:
    """Duration of an Opus packet from its TOC byte (RFC 6716 section 3.1); 0 when it cannot tell."""
    if not payload:
        return 0.0
    toc = payload[0]
    config, code = toc >> 3, toc & 0x03
    if config < 12:
        frame = (10.0, 20.0, 40.0, 60.0)[config % 4]
    elif config < 16:
        frame = (10.0, 20.0)[config % 2]
    else:
        frame = (2.5, 5.0, 10.0, 20.0)[config % 4]
    if code == 0:
        return frame
    if code in (1, 2):
        return 2 * frame
    return frame * (payload[1] & 0x3F) if len(payload) > 1 else 0.0


def forwardable(packet: InboundAudio) -> bool:
    """Whether a speaker's packet is exactly one 20 ms tick of audio, so it can be sent on as the mix."""
    key = packet.codec.key
    if key == "opus":
        return opus_frame_ms(packet.payload) == PTIME_MS
    if key in ("pcmu", "pcma", "g722"):
        return len(packet.payload) == packet.codec.samples_per_packet
    return False


@dataclass
class MixerStats:
    ticks: int = 0
    late_ticks: int = 0
    decodes: int = 0
    encodes: int = 0
    #: packets of a lone speaker forwarded as received, one per listener
    forwards: int = 0
    busy_seconds: float = 0.0


class AudioMixer:
    """One per room. `on_talking(member_id, talking)` is called when a member starts or stops talking."""

    def __init__(
        self,
        *,
        mixed_speakers: int = 3,
        speech_level: int = 50,
        talk_start_ms: int = 60,
        talk_stop_ms: int = 800,
        on_talking: Callable[[str, bool], None] | None = None,
        clock: bool = True,
    ) -> None:
        """With `clock` False nothing ticks by itself: the owner calls `tick()` every 20 ms (tests, benchmarks)."""
        self.mixed_speakers = mixed_speakers
        self.speech_level = speech_level
        self.talk_start_ticks = talk_start_ms // PTIME_MS
        self.talk_stop_ticks = talk_stop_ms // PTIME_MS
        self.on_talking = on_talking
        self.members: dict[str, MixerMember] = {}
        self.stats = MixerStats()
        #: the members mixed in the last tick, loudest first
        self.speakers: list[str] = []
        self._encoders: dict[tuple[str, str], tuple[AudioEncoder, int]] = {}
        #: one encoded 20 ms of silence per codec, sent to whoever hears nobody (no encoder runs for silence)
        self._silence: dict[str, list[bytes]] = {}
        self._task: asyncio.Task[None] | None = None
        self._clock = clock
        self._closed = False

    # membership

    def add(self, member_id: str, inbox: AudioInbox, sink: AudioSink) -> MixerMember:
        if self._closed:
            raise RuntimeError("mixer closed")
        member = MixerMember(member_id, inbox, sink, TalkDetector(self.talk_start_ticks, self.talk_stop_ticks))
        self.members[member_id] = member
        if self._task is None and self._clock:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sfu-mixer")
        return member

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None and member.detector.talking and self.on_talking is not None:
            self.on_talking(member_id, False)
        for key in [k for k in self._encoders if k[0] == member_id]:
            del self._encoders[key]
        if not self.members:
            self._stop_task()

    def set_muted(self, member_id: str, muted: bool) -> None:
        member = self.members.get(member_id)
        if member is not None:
            member.muted = muted

    async def close(self) -> None:
        self._closed = True
        task = self._stop_task()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.members.clear()
        self._encoders.clear()

    def _stop_task(self) -> asyncio.Task[None] | None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    # the clock

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = PTIME_MS / 1000
        deadline = loop.time()
        while True:
            deadline += interval
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.stats.late_ticks += 1
                if delay < -5 * interval:
                    deadline = loop.time()
                await asyncio.sleep(0)
            started = time.perf_counter()
            try:
                self.tick()
            except Exception:
                logger.exception("mixer tick failed")
            self.stats.busy_seconds += time.perf_counter() - started

    def tick(self) -> None:
        """Mix and send one 20 ms frame."""
        self.stats.ticks += 1
        tick = self.stats.ticks
        candidates: list[tuple[int, MixerMember, InboundAudio, np.ndarray | None]] = []
        changes: list[tuple[str, bool]] = []
        heard: list[tuple[MixerMember, InboundAudio | None, int, np.ndarray | None]] = []
        g711: list[int] = []  # indexes in `heard` of level-less G.711 packets, measured together below
        for member in self.members.values():
            packet = member.inbox.pop()
            level = 127
            decoded = None
            if packet is not None and not member.muted:
                if packet.level is not None:
                    level = packet.level
                elif packet.codec.key in ("pcmu", "pcma") and packet.payload:
                    g711.append(len(heard))
                else:
                    decoded = member.decode(packet)
                    self.stats.decodes += 1
                    level = level_dbov(decoded)
            heard.append((member, packet, level, decoded))
        if g711:
            levels = g711_levels([heard[i][1] for i in g711])
            for i, level in zip(g711, levels, strict=True):
                member, packet, _, decoded = heard[i]
                heard[i] = (member, packet, level, decoded)
        for member, packet, level, decoded in heard:
            speech = level <= self.speech_level
            if speech and packet is not None:
                candidates.append((level, member, packet, decoded))
            change = member.detector.observe(speech)
            if change is not None:
                changes.append((member.id, change))

        candidates.sort(key=lambda c: c[0])
        selected = candidates[: self.mixed_speakers]
        self.speakers = [c[1].id for c in selected]

        speaking = {c[1].id for c in selected}
        # a lone speaker is forwarded as he was encoded to listeners of his codec (no decode, no encode)
        lone = selected[0] if len(selected) == 1 and forwardable(selected[0][2]) else None
        voices: dict[str, np.ndarray] = {}
        total: np.ndarray | None = None

        def mixed() -> np.ndarray:
            nonlocal total
            if total is None:
                total = np.zeros(MIX_SAMPLES, dtype=np.int32)
                for _, member, packet, decoded in selected:
                    if decoded is None:
                        decoded = member.decode(packet)
                        self.stats.decodes += 1
                    assert member.decoder is not None
                    voice = member.decoder.to_mix(decoded).astype(np.int32)
                    voices[member.id] = voice
                    total += voice
            return total

        shared: dict[str, list[bytes]] = {}
        shared_pcm: np.ndarray | None = None
        for member in self.members.values():
            codec = member.sink.audio_codec
            if codec is None:
                continue
            speaks = member.id in speaking
            if not speaking or (speaks and len(speaking) == 1):
                member.sink.send_audio(self._silence_for(member, codec))
                continue
            member.silent_ticks = 0
            if speaks:
                own = np.clip(mixed() - voices[member.id], -32768, 32767).astype(np.int16)
                member.sink.send_audio(self._encode(member.id, codec, own, tick))
                continue
            if lone is not None and lone[2].codec.key == codec.key:
                self.stats.forwards += 1
                member.sink.send_audio([lone[2].payload])
                continue
            payloads = shared.get(codec.key)
            if payloads is None:
                if shared_pcm is None:
                    shared_pcm = np.clip(mixed(), -32768, 32767).astype(np.int16)
                payloads = shared[codec.key] = self._encode("*", codec, shared_pcm, tick)
            member.sink.send_audio(payloads)

        if tick % ENCODER_IDLE_TICKS == 0:
            for key in [k for k, (_, used) in self._encoders.items() if tick - used > ENCODER_IDLE_TICKS]:
                del self._encoders[key]

        if self.on_talking is not None:
            for member_id, talking in changes:
                self.on_talking(member_id, talking)

    def _silence_for(self, member: MixerMember, codec: AudioCodec) -> list[bytes]:
        ticks = member.silent_ticks
        member.silent_ticks += 1
        if ticks % DTX_INTERVAL_TICKS and codec.key == "opus" and getattr(member.sink, "dtx", False):
            return []
        payloads = self._silence.get(codec.key)
        if payloads is None:
            encoder = AudioEncoder(codec)
            silence = np.zeros(MIX_SAMPLES, dtype=np.int16)
            # a few frames in, the encoder's output for silence no longer changes (filters and predictors settled)
            for _ in range(5):
                payloads = encoder.encode(silence) or payloads
            payloads = self._silence[codec.key] = payloads or []
        return payloads

    def _encode(self, stream: str, codec: AudioCodec, pcm: np.ndarray, tick: int) -> list[bytes]:
        key = (stream, codec.key)
        entry = self._encoders.get(key)
        encoder = entry[0] if entry is not None else AudioEncoder(codec)
        self._encoders[key] = (encoder, tick)
        self.stats.encodes += 1
        return encoder.encode(pcm)
