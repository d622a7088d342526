"""Linphone's console client (Debian's `linphone-cli`, liblinphone 5.1), headless: commands on its standard input
(it reads them from a pipe as from a terminal), `soundcard use files` so that a WAV file is its microphone (`play`)
and another records what it hears (`record`), HOME set to its own folder (its database and settings live there),
and its debug log (`-d 6 -l`) holding every SIP message."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.phones.phone import PhoneProcess, free_port, write_tone


def account(username: str, password: str, domain: str, server: tuple[str, int], transport: str) -> list[str]:
    """The account as linphonerc holds it: the address of record in the server's domain, registered at the server
    and with the server as outbound proxy for every request (`reg_route`), like the GUI's 'outbound proxy' box."""
    host, port = server
    proxy = f"<sip:{host}:{port};transport={transport}>"
    return [
        "[proxy_0]",
        f"reg_proxy={proxy}",
        f"reg_route={proxy}",
        f"reg_identity=sip:{username}@{domain}",
        "reg_expires=600",
        "reg_sendregister=1",
        "publish=0",
        "[auth_info_0]",
        f"username={username}",
        f"passwd={password}",
        f"realm={domain}",
        f"domain={domain}",
    ]


def config(udp_port: int, tcp_port: int, video: bool, account_lines: list[str], sip_extra: tuple[str, ...] = ()) -> str:
    """linphonerc: our own ports, no STUN/ICE/upnp, no echo canceller (a file is the microphone); video from the
    static picture, shown nowhere; `sip_extra` lines in its [sip] section (media encryption, say)."""
    lines = [
        "[sip]",
        f"sip_port={udp_port}",
        f"sip_tcp_port={tcp_port}",
        "sip_tls_port=0",
        "default_proxy=0",
        *sip_extra,
        "[net]",
        "firewall_policy=0",
        "[rtp]",
        "audio_rtp_port=-1",
        "video_rtp_port=-1",
        "[sound]",
        "echocancellation=0",
        "[video]",
        f"capture={int(video)}",
        f"display={int(video)}",
        "automatically_initiate=" + str(int(video)),
        "automatically_accept=" + str(int(video)),
        "device=StaticImage: Static picture",
        "displaytype=MSExtDisplay",
        *account_lines,
    ]
    return "\n".join(lines) + "\n"


class Linphone(PhoneProcess):
    def __init__(self, folder: Path, tone_frequency: float) -> None:
        super().__init__(folder)
        self.tone = write_tone(folder / "tone.wav", tone_frequency, 60)
        self.record_file = folder / "heard.wav"
        self.debug_log = folder / "linphone-debug.log"

    async def start(
        self, account_lines: list[str], picture: Path | None = None, sip_extra: tuple[str, ...] = ()
    ) -> None:
        """Start with one account (`account()`), and wait for its registration. With a `picture`, video calls:
        the 'Static picture' camera shows it."""
        video = picture is not None
        rc = self.folder / "linphonerc"
        rc.write_text(config(free_port(), free_port(), video, account_lines, sip_extra))
        # Its database goes under $XDG_DATA_HOME/linphone (or ~/.local/share/linphone): without that folder the core
        # never starts (no listening, no REGISTER, nothing on the console).
        data = self.folder / ".local" / "share"
        (data / "linphone").mkdir(parents=True)
        env = {**os.environ, "HOME": str(self.folder), "XDG_DATA_HOME": str(data)}
        env["XDG_CONFIG_HOME"] = str(self.folder / ".config")
        argv = ["linphonec", "-c", str(rc), "-d", "6", "-l", str(self.debug_log), "-S"]
        if video:
            argv.append("-V")
        # On a pipe, linphonec reads commands but never runs its core (that happens in readline's idle hook, which
        # only a terminal gets): a pseudo-terminal it is.
        await self.spawn(*argv, env=env, terminal=True)
        await self.wait_for("linphonec>", 10)
        commands = ["soundcard use files", f"play {self.tone}", f"record {self.record_file}"]
        if picture is not None:
            commands += ["webcam use 0", f"staticpic set {picture}", "staticpic fps 15"]
        for command in commands:
            self.type(command)
        await self.wait_for("[LinphoneRegistrationOk]", 10, debug=True)

    async def wait_for(self, text: str, seconds: float, debug: bool = False) -> None:
        """Until its console (or its debug log) shows `text`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        read = self.sip_log if debug else self.log_text
        while text not in read():
            assert self.running, f"linphonec ended:\n{self.log_text()[-3000:]}"
            if loop.time() > deadline:
                raise AssertionError(f"linphonec never printed {text!r}:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)

    def sip_log(self) -> str:
        return self.debug_log.read_text(errors="replace") if self.debug_log.exists() else ""

    def _received_requests(self, method: str) -> list[str]:
        """The `method` requests that reached the phone, as its debug log shows them (header lines only)."""
        requests = []
        for chunk in self.sip_log().split("new bytes from")[1:]:
            message = chunk.partition("\n")[2]
            if message.startswith(f"{method} sip:"):
                requests.append(message.partition("\n\n")[0])
        return requests

    def received(self, method: str) -> str:
        """The last `method` request that reached the phone."""
        requests = self._received_requests(method)
        assert requests, f"no {method} reached linphone"
        return requests[-1]

    def count_received(self, method: str) -> int:
        return len(self._received_requests(method))
