"""baresip 1.0 (Debian's `baresip-core`), headless: no stdio (it needs a terminal), driven over its `ctrl_tcp`
module (netstring-framed JSON commands, responses and events), an `aufile` tone as microphone, the `sndfile` filter
recording what it hears, and `-s` so its log holds every SIP message it sends and receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

from tests.phones.phone import PhoneProcess, free_port, write_tone

MODULES = ("g711.so", "aufile.so", "aubridge.so", "sndfile.so", "account.so", "menu.so", "ctrl_tcp.so")


def config(sip_port: int, control_port: int, tone: Path, records: Path, extra: tuple[str, ...] = ()) -> str:
    """The config file: G.711 only, sound from a file and to nowhere (an `aubridge` device nobody reads from);
    `extra` lines after (more modules, a CA file for SIP over TLS)."""
    lines = [
        "poll_method epoll",
        f"sip_listen 127.0.0.1:{sip_port}",
        f"audio_source aufile,{tone}",
        "audio_player aubridge,nowhere",
        "audio_alert aubridge,nowhere",
        "audio_buffer 20-160",
        "rtcp_mux no",
        "module_path /usr/lib/baresip/modules",
        *(f"module {name}" for name in MODULES),
        f"ctrl_tcp_listen 127.0.0.1:{control_port}",
        f"snd_path {records}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def account_line(
    username: str, password: str, domain: str, server: tuple[str, int], transport: str, media_encryption: str = ""
) -> str:
    """One account: the address of record in the server's domain, reached through the server as outbound proxy;
    `media_encryption` is baresip's mediaenc (e.g. "srtp-mand": SDES-SRTP or no call)."""
    host, port = server
    encryption = f";mediaenc={media_encryption}" if media_encryption else ""
    return (
        f"<sip:{username}@{domain};transport={transport}>;auth_pass={password};"
        f'outbound="sip:{host}:{port};transport={transport}";regint=600;audio_codecs=PCMU,PCMA{encryption}'
    )


class Baresip(PhoneProcess):
    def __init__(self, folder: Path, tone_frequency: float) -> None:
        super().__init__(folder)
        self.tone = write_tone(folder / "tone.wav", tone_frequency, 60)
        self.records = folder / "records"
        self.records.mkdir()
        self.control_port = free_port()
        self.events: list[dict[str, Any]] = []
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, extra_config: tuple[str, ...] = ()) -> None:
        """Start with no account (its registration would happen before ctrl_tcp can report it): `add_account`."""
        # SIP on UDP and TCP at the port, TLS at the next one (baresip 1.0 always opens all three)
        settings = config(free_port(2), self.control_port, self.tone, self.records, extra_config)
        (self.folder / "config").write_text(settings)
        (self.folder / "accounts").write_text("")
        await self.spawn("baresip", "-f", str(self.folder), "-s")
        for _ in range(200):
            with contextlib.suppress(OSError):
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.control_port)
                self._reader = asyncio.get_running_loop().create_task(self._read(reader))
                return
            assert self.running, f"baresip ended at start:\n{self.log_text()}"
            await asyncio.sleep(0.05)
        raise AssertionError(f"baresip's ctrl_tcp never answered:\n{self.log_text()}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int((await reader.readuntil(b":"))[:-1])
                message = json.loads(await reader.readexactly(length))
                await reader.readexactly(1)  # the netstring's closing comma
                if message.get("event"):
                    self.events.append(message)
                elif message.get("token") in self._responses:
                    self._responses.pop(message["token"]).set_result(message)

    async def command(self, text: str) -> dict[str, Any]:
        """A menu command (`dial x`, `hangup`, `uafind aor`...) and its response."""
        assert self._writer is not None
        name, _, params = text.partition(" ")
        token = secrets.token_hex(4)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))
        return await asyncio.wait_for(future, 5)

    async def add_account(self, line: str) -> None:
        """A user agent for an account line; it registers at once (REGISTER_OK / REGISTER_FAIL events)."""
        response = await self.command(f"uanew {line}")
        assert response["ok"], response

    def saw(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("type") == kind]

    def received(self, method: str) -> int:
        """How many `method` requests reached the phone (from its SIP trace)."""
        return self.log_text().count(f"\n{method} sip:")

    def recording(self) -> Path:
        """The file of what the phone heard (sndfile's 'dec' dump of the call)."""
        files = sorted(self.records.glob("dump-*-dec.wav"))
        assert files, f"no recording in {self.records}: {list(self.records.iterdir())}"
        return files[-1]

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await super().stop()
