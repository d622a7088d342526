"""/api/websocketd/: the wazo-websocketd protocol. A client authenticates with its token, subscribes by event
name, says start, and receives the events its tenant and ACL allow (per-user events only for that user)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from gateway.auth.context import TENANTS, TOKENS
from gateway.auth.tokens import Caller
from gateway.events import Event
from gateway.services import SERVICES

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

CLOSE_AUTH_FAILED = 4003
CLOSE_TOKEN_EXPIRED = 4004
CLOSE_TOO_SLOW = 4008
QUEUE_LIMIT = 1024


class Session:
    def __init__(self, request: web.Request, socket: web.WebSocketResponse, caller: Caller, version: int) -> None:
        self.request = request
        self.socket = socket
        self.caller = caller
        self.version = version
        self.subscriptions: set[str] = set()
        self.started = False
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)

    def allows(self, event: Event) -> bool:
        caller = self.caller
        if not self.started or not ({event.name, "*"} & self.subscriptions):
            return False
        if event.user_uuid is not None and event.user_uuid != caller.user_uuid:
            return False
        if not self.request.app[TENANTS].visible_from(caller.tenant_uuid, event.tenant_uuid):
            return False
        return caller.may(event.required_acl)

    def offer(self, event: Event) -> None:
        if not self.allows(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A client that cannot keep up is let go rather than let it hold memory.
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)

    async def reply(self, op: str, code: int = 0, msg: str = "", data: Any = None) -> None:
        message: dict[str, Any] = {"op": op, "code": code, "msg": msg}
        if data is not None:
            message["data"] = data
        await self.socket.send_str(json.dumps(message))


async def _pump(session: Session) -> None:
    while True:
        event = await session.queue.get()
        if event is None:
            await session.socket.close(code=CLOSE_TOO_SLOW, message=b"too slow")
            return
        if session.caller.expired:
            await session.socket.close(code=CLOSE_TOKEN_EXPIRED, message=b"token expired")
            return
        payload = event.to_json()
        if session.version >= 2:
            await session.reply("event", data=payload)
        else:
            await session.socket.send_str(json.dumps(payload))


async def _handle(session: Session, text: str) -> None:
    try:
        message = json.loads(text)
        op = message["op"]
        data = message.get("data") or {}
    except (ValueError, KeyError, TypeError):
        await session.reply("error", 400, "invalid message: expected a JSON object with an op")
        return
    if op == "subscribe" and isinstance(data, dict) and isinstance(data.get("event_name"), str):
        session.subscriptions.add(data["event_name"])
        await session.reply("subscribe")
    elif op == "unsubscribe" and isinstance(data, dict):
        session.subscriptions.discard(str(data.get("event_name")))
        await session.reply("unsubscribe")
    elif op == "start":
        session.started = True
        await session.reply("start")
    elif op == "ping":
        await session.reply("pong", data=data)
    elif op == "token" and isinstance(data, dict):
        renewed = await session.request.app[TOKENS].check(str(data.get("token", "")))
        if renewed is None or renewed.user_uuid != session.caller.user_uuid:
            await session.socket.close(code=CLOSE_AUTH_FAILED, message=b"invalid token")
            return
        session.caller = renewed
        await session.reply("token")
    else:
        await session.reply(str(op), 400, "unknown operation or bad data")


@routes.get("/api/websocketd/")
@routes.get("/api/websocketd")
async def websocketd(request: web.Request) -> web.StreamResponse:
    socket = web.WebSocketResponse(heartbeat=30)
    await socket.prepare(request)
    token = request.query.get("token") or request.headers.get("X-Auth-Token") or ""
    caller = await request.app[TOKENS].check(token)
    if caller is None or not caller.may("websocketd"):
        await socket.close(code=CLOSE_AUTH_FAILED, message=b"authentication failed")
        return socket
    version = 2 if request.query.get("version") == "2" else 1
    session = Session(request, socket, caller, version)
    unsubscribe = request.app[SERVICES].bus.subscribe(session.offer)
    pump = asyncio.create_task(_pump(session))
    try:
        await session.reply("init")
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                await _handle(session, message.data)
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        unsubscribe()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
    return socket
