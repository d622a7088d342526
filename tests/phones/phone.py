"""What every real softphone under test shares: its own temporary folder, a free port, a tone to send, its log, and
a process that is ended by its PID however the test ends."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import os
import pty
import socket
import wave
from pathlib import Path
from typing import Self

import av
import numpy as np

from tests.sfu.clients import COLOURS, nearest_colour, tone_power


def free_port(count: int = 1) -> int:
    """A port P with P .. P+count-1 free on 127.0.0.1 for both UDP and TCP (SIP listens on both; baresip also
    listens for TLS on the next port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count <= 65536 and all(_free(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive ports free for both UDP and TCP")


def _free(port: int) -> bool:
    with contextlib.ExitStack() as sockets:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock = sockets.enter_context(socket.socket(socket.AF_INET, kind))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def write_tone(path: Path, frequency: float, seconds: float, rate: int = 8000) -> Path:
    """A mono 16-bit WAV of a sine tone (the phone's 'microphone')."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * math.pi * frequency * t) * 0.3 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def write_picture(path: Path, colour: str, width: int = 320, height: int = 240) -> Path:
    """A JPEG of one solid colour (a video phone's 'camera')."""
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), COLOURS[colour], dtype=np.uint8), format="rgb24")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 25)
    packets = encoder.encode(frame.reformat(format="yuvj420p")) + encoder.encode(None)
    path.write_bytes(b"".join(bytes(packet) for packet in packets))
    return path


def picture_colour(path: Path) -> str:
    """The colour a JPEG (a phone's snapshot of what it receives) shows."""
    with av.open(str(path)) as container:
        return nearest_colour(next(container.decode(video=0)))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """The first channel of a 16-bit WAV, and its rate."""
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        channels = source.getnchannels()
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return data.reshape(-1, channels)[:, 0], rate


def heard(path: Path, frequency: float, seconds: float = 2.0) -> float:
    """Share of the energy at `frequency` in the loud part of a phone's recording (its last `seconds` of sound:
    the start is ringing and silence)."""
    samples, rate = read_wav(path)
    loud = np.flatnonzero(np.abs(samples) > 300)
    assert loud.size > rate * 0.5, f"{path.name}: almost no sound recorded ({loud.size} loud samples)"
    window = samples[max(0, loud[-1] - int(seconds * rate)) : loud[-1]]
    return tone_power(window.astype(np.float64), frequency, rate)


class PhoneProcess:
    """A phone program run in its own folder; its output goes to `log`. `stop()` ends it by PID."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.log = folder / "phone.log"
        self.process: asyncio.subprocess.Process | None = None
        self._terminal: int | None = None

    async def spawn(self, *argv: str, env: dict[str, str] | None = None, terminal: bool = False) -> None:
        """Run the program; with `terminal`, its standard input is a pseudo-terminal (`type()` writes to it)."""
        stdin: int = asyncio.subprocess.DEVNULL
        if terminal:
            self._terminal, stdin = pty.openpty()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.folder,
                env=env,
                stdin=stdin,
                stdout=self.log.open("wb"),
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            if terminal:
                os.close(stdin)

    def type(self, line: str) -> None:
        """A line typed at the program's terminal."""
        assert self._terminal is not None, "not started with a terminal"
        os.write(self._terminal, line.encode() + b"\n")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 3)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._terminal is not None:
            os.close(self._terminal)
            self._terminal = None
