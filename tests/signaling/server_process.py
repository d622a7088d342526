"""The SIP stack in a process of its own (bench/sip/server.py), for tests that measure its memory or read its
log: UDP, TCP and WebSocket on 127.0.0.1, the default transaction caps, INFO logging to a file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "bench" / "sip" / "server.py"


class ServerProcess:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--ws", "--caps", "default", "--log-level", "INFO"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "READY", (line, self.log())
        self.udp_port, self.tcp_port, self.ws_port = (int(p) for p in line[1:4])

    def rss_mib(self) -> float:
        """Resident memory now (VmRSS), MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
