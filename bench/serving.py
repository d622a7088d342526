"""The server under test, in its own process: bootstrapped, serving on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "bench-admin-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    pid: int


@asynccontextmanager
async def serving(workdir: Path, database_url: str, **settings: str) -> AsyncIterator[Server]:
    """Bootstrap the admin (password PASSWORD) and run `meetings serve`; `settings` are MEETINGS_* overrides."""
    port = free_port()
    environ = {
        **os.environ,
        "MEETINGS_DATABASE__URL": database_url,
        "MEETINGS_HTTP__HOST": "127.0.0.1",
        "MEETINGS_HTTP__PORT": str(port),
        "MEETINGS_SIP__HOST": "127.0.0.1",
        "MEETINGS_SIP__UDP_PORT": "0",
        "MEETINGS_SIP__TCP_PORT": "0",
        "MEETINGS_LOGGING__LEVEL": "WARNING",
        **{f"MEETINGS_{key.upper()}": value for key, value in settings.items()},
    }
    booting = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "bootstrap", "--username", "admin", "--password", PASSWORD,
        cwd=workdir, env=environ, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await booting.wait() == 0, "bootstrap failed"
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", cwd=workdir, env=environ,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield Server(f"http://127.0.0.1:{port}", server.pid)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 20)
