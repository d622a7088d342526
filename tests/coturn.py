"""Debian's coturn, started by a test as a deployment runs it: TURN REST API credentials (``use-auth-secret``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TURNSERVER = shutil.which("turnserver")
REALM = "meetings.test"


@dataclass
class Coturn:
    address: str
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, transport: str = "tcp") -> str:
        return f"turn:{self.address}:{self.port}?transport={transport}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@contextmanager
def coturn(address: str, secret: str, folder: Path, relay_ports: tuple[int, int] = (33000, 33999)) -> Iterator[Coturn]:
    """turnserver listening on `address` (UDP and TCP, no TLS), relaying from `address` too; stopped at the end."""
    assert TURNSERVER is not None, "coturn is not installed (make system-test-deps)"
    port = _free_port(address)
    log = folder / "turnserver.log"
    command = [
        TURNSERVER,
        "-n",  # no configuration file: everything is here
        f"--listening-ip={address}",
        f"--relay-ip={address}",
        f"--listening-port={port}",
        f"--min-port={relay_ports[0]}",
        f"--max-port={relay_ports[1]}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        f"--realm={REALM}",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-multicast-peers",
        f"--userdb={folder / 'turndb'}",
        f"--pidfile={folder / 'turnserver.pid'}",
        f"--log-file={log}",
        "--simple-log",
    ]
    if address.startswith("127."):
        command.append("--allow-loopback-peers")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((address, port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"turnserver did not start:\n{log.read_text() if log.exists() else ''}"
                    ) from None
                time.sleep(0.1)
        yield Coturn(address, port, secret, process, log)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
