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

import aiohttp

PASSWORD = "bench-admin-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    pid: int
    process: asyncio.subprocess.Process


async def wait_ready(base: str, seconds: float = 30.0) -> None:
    """Until the server's readiness endpoint says yes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            try:
                async with session.get(f"{base}/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the server at {base} did not become ready in {seconds:.0f} s")


@asynccontextmanager
async def serving(workdir: Path, database_url: str, log: Path | None = None, **settings: str) -> AsyncIterator[Server]:
    """Bootstrap the admin (password PASSWORD) and run `meetings serve`; `settings` are MEETINGS_* overrides.

    The server's standard error goes to `log` when given (else nowhere); it is stopped (SIGTERM) at the end unless
    it has exited already.
    """
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
        # the SIGTERM at the end drains: calls still up are hung up after this long
        "MEETINGS_DRAIN__TIMEOUT_SECONDS": "5",
        **{f"MEETINGS_{key.upper()}": value for key, value in settings.items()},
    }
    booting = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "bootstrap", "--username", "admin", "--password", PASSWORD,
        cwd=workdir, env=environ, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await booting.wait() == 0, "bootstrap failed"
    errors = log.open("ab") if log is not None else None
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", cwd=workdir, env=environ,
        stdout=asyncio.subprocess.DEVNULL, stderr=errors or asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base)
        yield Server(base, server.pid, server)
    finally:
        if server.returncode is None:
            server.terminate()
        await asyncio.wait_for(server.wait(), 20)
        if errors is not None:
            errors.close()
