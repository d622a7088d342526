"""Pre-encoded media for the synthetic participants: encoded once, replayed, never decoded."""

from __future__ import annotations

import asyncio
import fractions
import os
import pickle
import struct
import time
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

CACHE = "/tmp/sfu-bench-media-v3.pickle"
FPS = 30
#: appended to every video frame: magic, publisher index, frame number, send time (survives passthrough)
TRAILER = struct.Struct("!4sBId")
MAGIC = b"SFUB"


def _encode_vp8(seconds: int = 10, width: int = 640, height: int = 480, bitrate: int = 1_500_000) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, FPS)
    codec.gop_size = seconds * FPS  # one keyframe per loop: every 10 s
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
    # camera-like content: smooth gradients, a textured moving square, light noise (keyframe ~ tens of KB)
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1).astype(np.uint8)
    texture = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
    frames = []
    for i in range(seconds * FPS):
        image = base.copy()
        left = (i * 6) % (width - 120)
        image[180:300, left : left + 120] = texture
        image = (image.astype(np.int16) + rng.integers(-6, 6, image.shape)).clip(0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        frames += [bytes(p) for p in codec.encode(frame)]
    frames += [bytes(p) for p in codec.encode(None)]
    return frames[: seconds * FPS]


def _encode_audio(codec_name: str, rate: int, seconds: int = 4) -> list[bytes]:
    """Speech-like, never silent: noise and a few harmonics, amplitude-modulated at syllable rate."""
    codec: Any = av.CodecContext.create(codec_name, "w")
    codec.sample_rate, codec.format, codec.layout = rate, "s16", "mono"
    codec.time_base = fractions.Fraction(1, rate)
    if codec_name == "libopus":
        codec.bit_rate = 32000
    rng = np.random.default_rng(2)
    t = np.arange(seconds * rate) / rate
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 900), start=1))
    signal = (0.6 * voice + 0.2 * rng.standard_normal(len(t))) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    pcm = (signal / np.abs(signal).max() * 0.4 * 32767).astype(np.int16)
    samples = rate // 50
    packets = []
    for i in range(0, len(pcm) - samples + 1, samples):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + samples].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = i
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


def load() -> dict[str, list[bytes]]:
    if os.path.exists(CACHE):
        with open(CACHE, "rb") as f:
            return pickle.load(f)
    media = {"vp8": _encode_vp8(), "alaw": _encode_audio("pcm_alaw", 8000), "opus": _encode_audio("libopus", 48000)}
    with open(CACHE + ".tmp", "wb") as f:
        pickle.dump(media, f)
    os.replace(CACHE + ".tmp", CACHE)
    return media


class PreEncodedVideo(MediaStreamTrack):
    """Replays pre-encoded VP8 at 30 fps as av.Packets; a keyframe request restarts at the loop's keyframe."""

    kind = "video"

    def __init__(self, frames: list[bytes], index: int) -> None:
        super().__init__()
        self.frames = frames
        self.index = index
        self.sent = 0
        self._position = 0
        self._start: float | None = None

    def keyframe(self) -> None:
        self._position = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self.sent / FPS - time.time()))
        data = self.frames[self._position % len(self.frames)]
        self._position += 1
        packet = av.Packet(data + TRAILER.pack(MAGIC, self.index, self.sent, time.time()))
        packet.pts = self.sent * (90000 // FPS)
        packet.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return packet


class PreEncodedAudio(MediaStreamTrack):
    """Replays pre-encoded Opus every 20 ms as av.Packets."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self.packets = packets
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self.sent * 0.02 - time.time()))
        packet = av.Packet(self.packets[self.sent % len(self.packets)])
        packet.pts = self.sent * 960
        packet.time_base = fractions.Fraction(1, 48000)
        self.sent += 1
        return packet
