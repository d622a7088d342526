"""SIP over WebSocket (RFC 7118) as an aiohttp request handler.

Mount it on the gateway's application: `app.router.add_get("/api/asterisk/ws", ws_transport.handle)`.
The `sip` subprotocol is required and echoed; a handshake without it is refused with 400. One SIP message
per WebSocket message (text or binary); replies go in the same frame type as the peer uses. Peers put
`*.invalid` hosts in Via and Contact: everything for them goes back over their connection (the `Flow`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from .connlimits import ConnectionGuard
from .message import DEFAULT_LIMITS, ParserLimits
from .transport import PING, PONG, Flow, Receiver, _safe_deliver

__all__ = ["WebSocketFlow", "WebSocketTransport"]

log = logging.getLogger(__name__)

SUBPROTOCOL = "sip"


class WebSocketFlow(Flow):
    """One WebSocket connection. Sends are queued and written in order by one writer task."""

    __slots__ = ("_binary", "_open", "_queue", "_writer", "secure", "ws")

    reliable = True

    def __init__(
        self, ws: web.WebSocketResponse, local: tuple[str, int], remote: tuple[str, int], secure: bool
    ) -> None:
        super().__init__(local, remote)
        self.ws = ws
        self.secure = secure
        self._open = True
        self._binary = False
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def transport(self) -> str:  # type: ignore[override]
        return "WSS" if self.secure else "WS"

    async def _write_loop(self) -> None:
        try:
            while True:
                data = await self._queue.get()
                if data is None:
                    return
                if self._binary:
                    await self.ws.send_bytes(data)
                else:
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        await self.ws.send_bytes(data)
                    else:
                        await self.ws.send_str(text)
        except Exception as e:
            log.debug("WebSocket write failed: %s", e)
            self._open = False

    def send(self, data: bytes) -> bool:
        if not self._open:
            return False
        self._queue.put_nowait(data)
        return True

    @property
    def alive(self) -> bool:
        return self._open

    def close(self) -> None:
        if self._open:
            self._open = False
            self._queue.put_nowait(None)
            asyncio.get_running_loop().create_task(self.ws.close())

    async def _finish(self) -> None:
        self._open = False
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._writer, 1.0)
        except (TimeoutError, asyncio.CancelledError):
            self._writer.cancel()
        self._closed()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class WebSocketTransport:
    """The aiohttp handler for SIP over WebSocket; `flows` are the open connections. With a `guard` (see
    `connlimits.py`) connections past its caps are refused with 503 before the upgrade, and timed out."""

    def __init__(
        self,
        receiver: Receiver,
        limits: ParserLimits = DEFAULT_LIMITS,
        heartbeat: float | None = 30.0,
        guard: ConnectionGuard | None = None,
    ) -> None:
        self.receiver = receiver
        self.limits = limits
        self.heartbeat = heartbeat
        self.guard = guard
        self.flows: set[WebSocketFlow] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        offered = [p.strip().lower() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            return web.Response(status=400, text="WebSocket subprotocol 'sip' required\n")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        remote = (str(peer[0]), int(peer[1])) if peer else ("0.0.0.0", 0)
        local = (str(sock[0]), int(sock[1])) if sock else ("0.0.0.0", 0)
        guard = self.guard
        if guard is not None and not guard.admit(remote[0]):
            return web.Response(
                status=503, text="too many SIP connections\n", headers={"Retry-After": "10", "Connection": "close"}
            )
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            heartbeat=self.heartbeat,
            max_msg_size=self.limits.max_head + self.limits.max_body,
        )
        try:
            await ws.prepare(request)
        except BaseException:
            if guard is not None:
                guard.release(remote[0])
            raise
        flow = WebSocketFlow(ws, local, remote, request.secure)
        self.flows.add(flow)
        if guard is not None:
            guard.watch(flow, remote[0])
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = msg.data.encode("utf-8")
                elif msg.type == WSMsgType.BINARY:
                    flow._binary = True
                    data = msg.data
                else:
                    break
                if data == PING:
                    flow.send(PONG)
                    continue
                if not data.strip(b"\r\n"):
                    continue
                if guard is not None:
                    guard.message(flow)
                _safe_deliver(self.receiver, data, flow)
        except Exception as e:
            log.debug("WebSocket connection from %s ended: %s", remote, e)
        finally:
            self.flows.discard(flow)
            if guard is not None:
                guard.forget(flow)
            await flow._finish()
        return ws

    async def close(self) -> None:
        for flow in list(self.flows):
            await flow.ws.close()
