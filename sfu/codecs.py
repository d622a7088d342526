"""Codec helpers: audio codec descriptions, decoding to the mixer's format, encoding a mix, keyframe detection.

Decoding and encoding are aiortc's codec classes (libav underneath); resampling is av's AudioResampler.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np
from aiortc.codecs import get_decoder, get_encoder
from aiortc.jitterbuffer import JitterFrame
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


class AudioDecoder:
    """Decodes one participant's packets; `to_mix` resamples to the mixer's 48 kHz mono, exactly 960 samples."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self.rate = decoded_rate(codec)
        self._decoder = get_decoder(codec.parameters())
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=MIX_RATE)
        self._pending = np.zeros(0, dtype=np.int16)

    def decode(self, payload: bytes, timestamp: int) -> np.ndarray:
        """Samples at the codec's own rate, mono int16 (stereo is downmixed by av when resampling to mix)."""
        frames = self._decoder.decode(JitterFrame(data=payload, timestamp=timestamp))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        arrays = []
        for frame in frames:
            assert isinstance(frame, av.AudioFrame)
            data = frame.to_ndarray()
            if len(frame.layout.channels) > 1:
                # s16 packed stereo: (1, 2n) interleaved
                data = data.reshape(-1, len(frame.layout.channels)).mean(axis=1).astype(np.int16)
            arrays.append(data.reshape(-1))
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    def to_mix(self, samples: np.ndarray) -> np.ndarray:
        """Resample decoded samples to 960 samples of 48 kHz mono (a backlog of at most one frame is kept)."""
        if self.rate != MIX_RATE:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.rate
            samples = np.concatenate(
                [np.zeros(0, dtype=np.int16)] + [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
            )
        buffered = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        out = buffered[:MIX_SAMPLES]
        self._pending = buffered[MIX_SAMPLES : 2 * MIX_SAMPLES]
        if len(out) < MIX_SAMPLES:
            out = np.concatenate([out, np.zeros(MIX_SAMPLES - len(out), dtype=np.int16)])
        return out


class AudioEncoder:
    """Encodes 20 ms of 48 kHz mono mix into zero, one or (rarely, resampler delay) two packets."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self._encoder = get_encoder(codec.parameters())
        self._pts = 0

    def encode(self, samples: np.ndarray) -> list[bytes]:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = MIX_RATE
        frame.pts = self._pts
        frame.time_base = MIX_TIME_BASE
        self._pts += len(samples)
        payloads, _ = self._encoder.encode(frame)
        return payloads


def level_dbov(samples: np.ndarray) -> int:
    """RFC 6464 level of decoded samples: -dBov of the RMS, 0 (loudest) .. 127 (silence)."""
    if len(samples) == 0:
        return 127
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms < 1.0:
        return 127
    db = 20.0 * np.log10(rms / 32767.0)
    return int(min(127, max(0, round(-db))))


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether a depayloaded frame starts a new picture: VP8 key frame, or H.264 IDR/SPS (Annex-B input)."""
    name = codec_name.upper()
    if name == "VP8":
        # RFC 6386 section 9.1: the frame tag's lowest bit is 0 for a key frame
        return len(data) >= 3 and not data[0] & 0x01
    if name == "H264":
        start = 0
        while True:
            pos = data.find(b"\x00\x00\x01", start)
            if pos < 0 or pos + 3 >= len(data):
                return False
            nal_type = data[pos + 3] & 0x1F
            if nal_type in (5, 7):
                return True
            start = pos + 3
    return False
