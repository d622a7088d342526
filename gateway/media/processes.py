"""The media worker processes `meetings serve --media-workers N` starts on this machine, and ends with it.

Each gets the server's `media`, `bus` and `logging` settings through the environment (MEETINGS_SECTION__KEY, as
any setting), its own slice of the RTP port range, and a parent-death signal: a server killed outright leaves no
worker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys

from gateway.config import Settings

logger = logging.getLogger(__name__)

#: seconds a worker has to close its rooms after SIGTERM before it is killed
STOP_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the server's process ends, however it ends (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_environment(settings: Settings, port_range: tuple[int, int]) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MEETINGS_")}
    for section in ("media", "bus", "logging"):
        for key, value in getattr(settings, section).model_dump().items():
            environ[f"MEETINGS_{section.upper()}__{key.upper()}"] = json.dumps(value)
    environ["MEETINGS_MEDIA__WORKERS"] = "0"
    environ["MEETINGS_MEDIA__RTP_PORT_MIN"], environ["MEETINGS_MEDIA__RTP_PORT_MAX"] = map(str, port_range)
    return environ


class WorkerProcesses:
    """`settings.media.workers` worker processes, started and ended together."""

    def __init__(self, settings: Settings, name: str = "worker") -> None:
        self.settings = settings
        self.name = name
        self.processes: list[asyncio.subprocess.Process] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    async def start(self) -> None:
        media = self.settings.media
        for index, port_range in enumerate(media.worker_port_ranges()):
            worker_id = f"{self.name}-{os.getpid()}-{index + 1}"
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "media-worker", "--config", os.devnull, "--id", worker_id,
                env=worker_environment(self.settings, port_range),
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
            self.processes.append(process)
            logger.info("media worker %s started (pid %d, RTP ports %d-%d)", worker_id, process.pid, *port_range)

    async def stop(self) -> None:
        """SIGTERM to each (it closes its rooms), SIGKILL to those still there after STOP_SECONDS."""
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                logger.warning("media worker pid %d did not stop: killed", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self.processes.clear()
