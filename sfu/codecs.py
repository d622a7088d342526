"""Codec helpers: audio codec descriptions, decoding to the mixer's format, encoding a mix.

Decoding and encoding are aiortc's codec classes (libav underneath); resampling is av's AudioResampler.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any, cast

import av
import numpy as np
from aiortc.codecs import get_decoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

#: the mixer works on 20 ms of 48 kHz mono signed 16-bit audio
MIX_RATE = 48000
MIX_SAMPLES = 960
MIX_TIME_BASE = fractions.Fraction(1, MIX_RATE)
PTIME_MS = 20

#: static RTP payload types (RFC 3551) a phone may offer without rtpmap
STATIC_AUDIO_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}

#: audio codecs the mixer can decode and encode, with their RTP clock rate and channel count
AUDIO_CODECS: dict[str, tuple[int, int]] = {"opus": (48000, 2), "G722": (8000, 1), "PCMU": (8000, 1), "PCMA": (8000, 1)}

#: decoded sample rate of each codec (G.722's RTP clock is 8 kHz but it carries 16 kHz audio)
_DECODED_RATE = {"opus": 48000, "g722": 16000, "pcmu": 8000, "pcma": 8000}


@dataclass(frozen=True)
class AudioCodec:
    """An audio codec as negotiated on one leg: name (as in rtpmap), RTP clock rate, payload type."""

    name: str
    clock_rate: int
    payload_type: int
    channels: int = 1

    @property
    def key(self) -> str:
        """Identifies encoded streams that listeners can share (payload type excluded)."""
        return self.name.lower()

    @property
    def samples_per_packet(self) -> int:
        """RTP timestamp increment of a 20 ms packet."""
        return self.clock_rate * PTIME_MS // 1000

    def parameters(self) -> RTCRtpCodecParameters:
        return RTCRtpCodecParameters(
            mimeType=f"audio/{self.name}",
            clockRate=self.clock_rate,
            channels=self.channels if self.channels > 1 else None,
            payloadType=self.payload_type,
        )

    @classmethod
    def from_parameters(cls, codec: RTCRtpCodecParameters) -> AudioCodec:
        return cls(codec.name, codec.clockRate, codec.payloadType or 0, codec.channels or 1)


def is_supported_audio(name: str) -> bool:
    return name.lower() in _DECODED_RATE


def decoded_rate(codec: AudioCodec) -> int:
    return _DECODED_RATE[codec.key]


def _lowpass(ratio: int, taps_per_phase: int = 16) -> np.ndarray:
    """Windowed-sinc low-pass for resampling by an integer `ratio` (cut-off a little under the low rate's Nyquist)."""
    n = ratio * taps_per_phase + 1
    t = np.arange(n) - (n - 1) / 2
    h = np.sinc(t * 0.9 / ratio) * np.hamming(n)
    return (h / h.sum()).astype(np.float32)


class Resampler:
    """Integer-ratio resampling between a codec's rate and the 48 kHz mix, with filter state kept across frames.

    Written here rather than using av.AudioResampler: per 20 ms frame the latter costs about 0.5 ms (a filter graph
    per call), more than the whole mix of a participant.
    """

    def __init__(self, rate: int, up: bool) -> None:
        self.ratio = MIX_RATE // rate
        self.up = up
        self.filter = _lowpass(self.ratio) * (self.ratio if up else 1)
        self._tail = np.zeros(len(self.filter) - 1, dtype=np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        if self.ratio == 1:
            return samples
        x = samples.astype(np.float32)
        if self.up:
            stuffed = np.zeros(len(x) * self.ratio, dtype=np.float32)
            stuffed[:: self.ratio] = x
            x = stuffed
        buffered = np.concatenate([self._tail, x])
        self._tail = buffered[len(buffered) - len(self._tail) :]
        y = np.convolve(buffered, self.filter, mode="valid")
        if not self.up:
            y = y[:: self.ratio]
        return np.clip(y, -32768, 32767).astype(np.int16)


def _g711_table(codec_name: str) -> np.ndarray:
    """Every G.711 code decoded once by av's decoder: decoding is then a table lookup."""
    decoder: Any = av.CodecContext.create(codec_name, "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "mono", 8000
    frames = decoder.decode(av.Packet(bytes(range(256))))
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)


_G711_TABLES: dict[str, np.ndarray] = {}


class AudioDecoder:
    """Decodes one participant's packets (libav via av; G.711 by table); `to_mix` resamples to 48 kHz mono."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self.rate = decoded_rate(codec)
        self._table: np.ndarray | None = None
        self._decoder: Any = None
        if codec.key in ("pcmu", "pcma"):
            name = "pcm_mulaw" if codec.key == "pcmu" else "pcm_alaw"
            if name not in _G711_TABLES:
                _G711_TABLES[name] = _g711_table(name)
            self._table = _G711_TABLES[name]
        else:
            self._decoder = cast(Any, get_decoder(codec.parameters())).codec
        self._resampler = Resampler(self.rate, up=True)
        self._pending = np.zeros(0, dtype=np.int16)

    def decode(self, payload: bytes, timestamp: int) -> np.ndarray:
        """Mono int16 samples at the codec's own rate."""
        if self._table is not None:
            return self._table[np.frombuffer(payload, dtype=np.uint8)]
        assert self._decoder is not None
        arrays = []
        for frame in self._decoder.decode(av.Packet(payload)):
            data = frame.to_ndarray()
            channels = len(frame.layout.channels)
            if channels > 1:
                data = data.reshape(-1, channels).mean(axis=1)
            arrays.append(data.reshape(-1).astype(np.int16))
        if not arrays:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    def to_mix(self, samples: np.ndarray) -> np.ndarray:
        """Resample decoded samples to 960 samples of 48 kHz mono (a backlog of at most one frame is kept)."""
        samples = self._resampler.process(samples)
        buffered = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        out = buffered[:MIX_SAMPLES]
        self._pending = buffered[MIX_SAMPLES : 2 * MIX_SAMPLES]
        if len(out) < MIX_SAMPLES:
            out = np.concatenate([out, np.zeros(MIX_SAMPLES - len(out), dtype=np.int16)])
        return out


_ENCODERS = {"opus": "libopus", "g722": "g722", "pcmu": "pcm_mulaw", "pcma": "pcm_alaw"}


class AudioEncoder:
    """Encodes 20 ms of 48 kHz mono mix into one packet of the codec (libav through av)."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self.rate = decoded_rate(codec)
        context: Any = av.CodecContext.create(_ENCODERS[codec.key], "w")
        context.format, context.layout, context.sample_rate = "s16", "mono", self.rate
        context.time_base = fractions.Fraction(1, self.rate)
        if codec.key == "opus":
            context.bit_rate = 32000
            context.options = {"application": "voip"}
        self._context = context
        self._resampler = Resampler(self.rate, up=False)
        self._pts = 0

    def encode(self, samples: np.ndarray) -> list[bytes]:
        pcm = self._resampler.process(samples)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = self._context.time_base
        self._pts += len(pcm)
        return [bytes(p) for p in self._context.encode(frame)]


def level_dbov(samples: np.ndarray) -> int:
    """RFC 6464 level of decoded samples: -dBov of the RMS, 0 (loudest) .. 127 (silence)."""
    if len(samples) == 0:
        return 127
    x = samples.astype(np.float32)
    rms = float(np.sqrt(np.dot(x, x) / len(x)))
    if rms < 1.0:
        return 127
    db = 20.0 * np.log10(rms / 32767.0)
    return int(min(127, max(0, round(-db))))


_G711_SQUARES: dict[str, np.ndarray] = {}


def g711_levels(packets: list[Any]) -> list[int]:
    """RFC 6464 levels of many G.711 packets (InboundAudio, payloads not empty) at once, without decoding them.

    Each payload byte indexes a table of squared sample values: one vectorised pass for every level-less phone of a
    room, where decoding and measuring each one cost tens of microseconds apiece.
    """
    lengths = np.array([len(p.payload) for p in packets])
    data = np.frombuffer(b"".join(p.payload for p in packets), dtype=np.uint8)
    keys = {p.codec.key for p in packets}
    squares: np.ndarray | None = None
    for key in keys:
        name = "pcm_mulaw" if key == "pcmu" else "pcm_alaw"
        table = _G711_SQUARES.get(name)
        if table is None:
            if name not in _G711_TABLES:
                _G711_TABLES[name] = _g711_table(name)
            table = _G711_SQUARES[name] = _G711_TABLES[name].astype(np.float64) ** 2
        if len(keys) == 1:
            squares = table[data]
        else:
            if squares is None:
                squares = np.empty(len(data), dtype=np.float64)
            mask = np.repeat(np.array([p.codec.key == key for p in packets]), lengths)
            squares[mask] = table[data[mask]]
    assert squares is not None
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rms = np.sqrt(np.add.reduceat(squares, starts) / lengths)
    db = 20.0 * np.log10(np.maximum(rms, 1e-9) / 32767.0)
    levels = np.where(rms < 1.0, 127, np.clip(np.round(-db), 0, 127))
    return [int(level) for level in levels]
