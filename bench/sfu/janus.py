"""Janus VideoRoom (Debian's `janus` package, unpatched) as the side-by-side peer of the SFU benchmark.

`write_config` lays out a configuration folder that loads only the VideoRoom plugin and the HTTP transport, on one
veth address; `JanusApi` drives VideoRoom through Janus's HTTP API (one session, one handle per peer, events by
long poll). Written by hand: it is a few requests, and no maintained Python client of the Janus API exists in the
dependencies (the benchmark's aiohttp does the HTTP).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any, cast

import aiohttp

LIBRARY = Path("/usr/lib/x86_64-linux-gnu/janus")
HTTP_PORT = 8088
ROOM = 1234


def write_config(folder: Path, address: str, interface: str) -> Path:
    """Write janus.jcfg and its plugin/transport configuration under `folder`; returns janus.jcfg's path.

    `interface` (the veth's name inside the namespace) is the only one ICE gathers on; `address` (its address) goes
    in the SDP and is where the HTTP API listens. The plugin and transport folders hold only the two libraries, so
    Janus loads nothing else (no event handlers, no loggers: their folders are empty).
    """
    for name, library in (("plugins", "plugins/libjanus_videoroom.so"), ("transports", "transports/libjanus_http.so")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / Path(library).name).symlink_to(LIBRARY / library)
    for empty in ("events", "loggers"):
        (folder / empty).mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    interface = "{address}"
    debug_level = 3
    session_timeout = 120
}}
media: {{
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{interface}"
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {HTTP_PORT}
    ip = "{address}"
    https = false
}}
admin: {{
    admin_http = false
}}
"""
    )
    return folder / "janus.jcfg"


def command(config: Path) -> list[str]:
    return ["janus", "-C", str(config), "-F", str(config.parent), "--disable-colors"]


def base_url(address: str) -> str:
    return f"http://{address}:{HTTP_PORT}/janus"


class JanusError(RuntimeError):
    pass


class JanusApi:
    """One Janus session; `message` sends a plugin request to a handle and returns the plugin's answer and JSEP
    (the synchronous reply, or the event that completes an asynchronous one)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session_url = ""
        self.hangups: list[int] = []
        self._http: aiohttp.ClientSession | None = None
        self._transactions = (f"t{n}" for n in itertools.count())
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, url: str, request: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.post(url, json=request) as response:
            reply = cast(dict[str, Any], await response.json(content_type=None))
        if reply.get("janus") == "error":
            raise JanusError(reply.get("error"))
        return reply

    async def open(self, wait: float = 20) -> None:
        """Create the session, waiting up to `wait` seconds for Janus to answer."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90))
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                reply = await self._post(self.url, {"janus": "create", "transaction": next(self._transactions)})
                break
            except aiohttp.ClientError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.session_url = f"{self.url}/{reply['data']['id']}"
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        """Long-poll the session's events (which also keeps it alive) and complete the waiting requests."""
        assert self._http is not None
        while True:
            async with self._http.get(self.session_url, params={"maxev": "20"}) as response:
                events = await response.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                if event.get("janus") == "hangup":
                    self.hangups.append(int(event.get("sender", 0)))
                future = self._pending.pop(str(event.get("transaction")), None)
                if future is not None and not future.done():
                    future.set_result(event)

    async def attach(self) -> str:
        reply = await self._post(
            self.session_url,
            {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": next(self._transactions)},
        )
        return f"{self.session_url}/{reply['data']['id']}"

    async def message(
        self, handle: str, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        transaction = next(self._transactions)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        request: dict[str, Any] = {"janus": "message", "transaction": transaction, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._post(handle, request)
        if reply.get("janus") == "ack":
            reply = await asyncio.wait_for(future, 30)
        self._pending.pop(transaction, None)
        data = cast(dict[str, Any], reply.get("plugindata", {}).get("data", {}))
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return data, reply.get("jsep")

    async def create_room(self, publishers: int) -> int:
        await self.message(
            await self.attach(),
            {
                "request": "create",
                "room": ROOM,
                "publishers": publishers,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "permanent": False,
            },
        )
        return ROOM

    async def publish(self, offer: str) -> tuple[int, str]:
        """Join the room as a publisher and publish `offer`; returns the feed id and Janus's SDP answer."""
        handle = await self.attach()
        joined, _ = await self.message(handle, {"request": "join", "ptype": "publisher", "room": ROOM})
        _, jsep = await self.message(handle, {"request": "publish"}, {"type": "offer", "sdp": offer, "trickle": False})
        if jsep is None:
            raise JanusError("publish: no SDP answer")
        return int(joined["id"]), str(jsep["sdp"])

    async def subscribe(self, feed: int) -> tuple[str, str]:
        """Join the room as a subscriber of `feed`; returns the handle and Janus's SDP offer."""
        handle = await self.attach()
        _, jsep = await self.message(
            handle, {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": feed}]}
        )
        if jsep is None:
            raise JanusError("subscribe: no SDP offer")
        return handle, str(jsep["sdp"])

    async def start(self, handle: str, answer: str) -> None:
        await self.message(handle, {"request": "start"}, {"type": "answer", "sdp": answer, "trickle": False})

    async def participants(self) -> int:
        """Publishers in the room (VideoRoom lists only those)."""
        data, _ = await self.message(await self.attach(), {"request": "listparticipants", "room": ROOM})
        return len(data.get("participants", []))

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._http is not None:
            if self.session_url:
                try:
                    await self._post(self.session_url, {"janus": "destroy", "transaction": "bye"})
                except (TimeoutError, aiohttp.ClientError, JanusError):
                    pass  # the process is ended right after anyway
            await self._http.close()
