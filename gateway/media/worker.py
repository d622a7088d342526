"""A media worker: SFU rooms in their own process, reached by the control role over RabbitMQ (`meetings
media-worker`). It runs the same in-process rooms as the embedded default (`gateway.media.local`) and serves them
through the requests and events of `gateway.media.wire`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from gateway.broker import connect
from sfu.errors import ParticipantClosed, RoomClosed, SfuError
from sfu.server import SFU
from sfu.settings import MediaSettings

from . import wire
from .local import LocalMedia, LocalParticipant, LocalRoom

logger = logging.getLogger(__name__)

#: room events passed on to the room's owner as they are
ROOM_EVENTS = ("joined", "left", "talking", "muted", "video_changed")


class MediaWorker:
    """Serves this process's rooms to the control roles that place them here."""

    def __init__(
        self,
        url: str,
        exchange: str,
        settings: MediaSettings,
        worker_id: str | None = None,
        announce_seconds: float = wire.ANNOUNCE_SECONDS,
        tick_seconds: float = wire.TICK_SECONDS,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.queue_name = wire.worker_queue(exchange, self.id)
        self.settings = settings
        self.announce_seconds = announce_seconds
        self.tick_seconds = tick_seconds
        self.media = LocalMedia(SFU(settings))
        #: each room's owner: the control role's queue its events go to
        self.owners: dict[str, str] = {}
        self.participants: dict[str, LocalParticipant] = {}
        self.requests = 0
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        #: replies and events, published in the order they were made
        self._outgoing: asyncio.Queue[tuple[str, aio_pika.Message]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._cpu = (time.monotonic(), time.process_time())
        self._ops: dict[str, Callable[..., Awaitable[Any]]] = {
            "open": self._open,
            "options": self._options,
            "join": self._join,
            "close_room": self._close_room,
            "slots_offer": self._slots_offer,
            "slots_answer": self._slots_answer,
            "offer": self._offer,
            "answer": self._answer,
            "keyframes": self._keyframes,
            "set_muted": self._set_muted,
            "toggle_mute": self._toggle_mute,
            "pin": self._pin,
            "close": self._close,
        }

    async def start(self) -> None:
        self._connection = await connect(self.url, f"meetings media worker {self.id}")
        channel = self._channel = await self._connection.channel()
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key=wire.DISCOVER)
        await queue.consume(self._on_message, no_ack=True)
        self._background = [
            asyncio.create_task(self._send_outgoing()),
            asyncio.create_task(self._announce_every()),
            asyncio.create_task(self._tick_every()),
        ]
        logger.info("media worker %s: serving on %s (RTP ports %d-%d)", self.id, self.exchange_name,
                    self.settings.rtp_port_min, self.settings.rtp_port_max)  # fmt: skip

    async def close(self) -> None:
        """Close every room (their participants' legs with them), say goodbye, disconnect."""
        await self.media.close()
        # the owners hear of their rooms closing before the worker's goodbye
        for _ in range(40):
            if self._outgoing.empty():
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await self._publish_announcement(gone=True)
        for task in self._background:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._connection is not None:
            await self._connection.close()

    # -- announcements
    def load(self) -> dict[str, Any]:
        rooms, participants = self.media.census()
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu
        self._cpu = (now, cpu)
        return {
            "worker": self.id,
            "queue": self.queue_name,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "rooms": rooms,
            "participants": participants,
            "cpu": round((cpu - cpu_then) / (now - then), 3) if now > then else 0.0,
            "counters": wire.counters_to_json(self.media.media_counters()),
            "interval": self.announce_seconds,
            "owned": self.rooms_by_owner(),
        }

    def rooms_by_owner(self) -> dict[str, list[str]]:
        """The open rooms, by the control role that placed each (a control role that moved one away after taking
        this worker for dead sees it here, and has it closed)."""
        owned: dict[str, list[str]] = {}
        for room_id, owner in self.owners.items():
            room = self.media.rooms.get(room_id)
            if room is not None and not room.closed:
                owned.setdefault(owner, []).append(room_id)
        return owned

    async def _publish_announcement(self, gone: bool = False) -> None:
        if self._exchange is not None:
            body = {**self.load(), "gone": gone}
            await self._exchange.publish(wire.message(body, type="announce"), routing_key=wire.ANNOUNCE, timeout=5)

    async def _announce_every(self) -> None:
        while True:
            try:
                await self._publish_announcement()
            except Exception as exc:  # the broker is away: the next announcement tries again
                logger.debug("media worker: announcement not sent (%s)", exc)
            await asyncio.sleep(self.announce_seconds)

    async def _tick_every(self) -> None:
        """Each room's participant states with their call quality, for the owner's copies (quality, RTP watch)."""
        while True:
            await asyncio.sleep(self.tick_seconds)
            for room_id, room in list(self.media.rooms.items()):
                if not room.closed and room_id in self.owners:
                    self._event(room, "tick", quality=True)

    # -- requests
    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if incoming.type == wire.DISCOVER:
            with contextlib.suppress(Exception):
                await self._publish_announcement()
            return
        task = asyncio.get_running_loop().create_task(self._request(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, incoming: AbstractIncomingMessage) -> None:
        self.requests += 1
        try:
            body = json.loads(incoming.body)
            op = self._ops[body["op"]]
            reply: dict[str, Any] = {"result": await op(**body.get("args", {}))}
        except SfuError as exc:
            reply = wire.error_to_json(exc)
        except Exception as exc:
            logger.exception("media worker: request failed")
            reply = {"error": "SfuError", "message": f"media worker error: {exc}"}
        if incoming.reply_to:
            self._outgoing.put_nowait(
                (incoming.reply_to, wire.message(reply, type="reply", correlation_id=incoming.correlation_id))
            )

    async def _send_outgoing(self) -> None:
        while True:
            queue, outgoing = await self._outgoing.get()
            channel = self._channel
            try:
                if channel is None:
                    raise ConnectionError("no channel")
                await channel.default_exchange.publish(outgoing, routing_key=queue, timeout=5)
            except Exception as exc:  # its control role is gone, or the broker is
                logger.debug("media worker: message to %s not sent (%s)", queue, exc)

    # -- events
    def _event(self, room: LocalRoom, name: str, *args: Any, quality: bool = False, **extra: Any) -> None:
        owner = self.owners.get(room.id)
        if owner is None:
            return
        states = [wire.participant_state(p, quality=quality) for p in list(room.participants.values())]
        body = {"room": room.id, "worker": self.id, "event": name, "args": list(args), "states": states, **extra}
        self._outgoing.put_nowait((owner, wire.message(body, type="event")))

    def _watch_room(self, room: LocalRoom) -> None:
        for name in ROOM_EVENTS:
            room.on(name, lambda *args, name=name: self._event(room, name, *args))

        def closed() -> None:
            self._event(room, "closed")
            self.owners.pop(room.id, None)

        room.on("closed", closed)

    def _watch_participant(self, room: LocalRoom, participant: LocalParticipant) -> None:
        self.participants[participant.id] = participant

        def closed(reason: str) -> None:
            if self.participants.get(participant.id) is participant:
                del self.participants[participant.id]
            state = wire.participant_state(participant, summary=True)
            self._event(room, "participant_closed", participant.id, reason, participant=state)

        participant.on("closed", closed)
        participant.on("picture_fast_update", lambda: self._event(room, "picture_fast_update", participant.id))

    def _room(self, room_id: str) -> LocalRoom:
        room = self.media.rooms.get(room_id)
        if room is None or room.closed:
            raise RoomClosed(f"room {room_id} is closed")
        return room

    def _participant(self, participant_id: str) -> LocalParticipant:
        participant = self.participants.get(participant_id)
        if participant is None or participant.closed:
            raise ParticipantClosed(f"participant {participant_id} has left")
        return participant

    # -- the operations
    async def _open(self, room: str, options: dict[str, Any], owner: str) -> None:
        existing = self.media.rooms.get(room)
        opened = self.media.open_room(room, wire.options_from_json(options))
        self.owners[room] = owner
        if opened is not existing:
            self._watch_room(opened)

    async def _options(self, room: str, options: dict[str, Any]) -> None:
        self._room(room).set_options(wire.options_from_json(options))

    async def _join(
        self, room: str, kind: str, offer: str | None, info: dict[str, Any], max_participants: int
    ) -> dict[str, Any]:
        media_room = self._room(room)
        if kind == "webrtc":
            participant, sdp = await media_room.join_webrtc(offer or "", info, max_participants=max_participants)
        elif offer is not None:
            participant, sdp = await media_room.join_rtp(offer, info, max_participants=max_participants)
        else:
            participant, sdp = await media_room.join_rtp_outbound(info, max_participants=max_participants)
        self._watch_participant(media_room, participant)
        return {"participant": wire.participant_state(participant, quality=True), "sdp": sdp}

    async def _close_room(self, room: str, reason: str) -> None:
        media_room = self.media.rooms.get(room)
        if media_room is not None:
            await media_room.close(reason)

    async def _slots_offer(self, participant: str) -> dict[str, Any]:
        handle = self._participant(participant)
        sdp = await handle.create_slots_offer()
        return {"sdp": sdp, "state": wire.participant_state(handle)}

    async def _slots_answer(self, participant: str, sdp: str) -> dict[str, Any]:
        handle = self._participant(participant)
        await handle.accept_slots_answer(sdp)
        return {"state": wire.participant_state(handle)}

    async def _offer(self, participant: str, sdp: str) -> dict[str, Any]:
        handle = self._participant(participant)
        answer = await handle.handle_offer(sdp)
        return {"sdp": answer, "state": wire.participant_state(handle)}

    async def _answer(self, participant: str, sdp: str) -> dict[str, Any]:
        handle = self._participant(participant)
        await handle.accept_answer(sdp)
        return {"state": wire.participant_state(handle)}

    async def _keyframes(self, participant: str) -> None:
        self._participant(participant).request_keyframes()

    async def _set_muted(self, participant: str, muted: bool) -> None:
        self._participant(participant).set_muted(muted)

    async def _toggle_mute(self, participant: str) -> None:
        self._participant(participant).toggle_mute()

    async def _pin(self, participant: str, pinned: str | None) -> None:
        self._participant(participant).pin(pinned)

    async def _close(self, participant: str, reason: str) -> None:
        handle = self.participants.get(participant)
        if handle is not None:
            await handle.close(reason)  # its participant_closed event carries the last figures


async def run_worker(worker: MediaWorker) -> None:
    """Serve until SIGTERM or SIGINT, then close the rooms."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    await worker.start()
    try:
        await stop.wait()
    finally:
        logger.info("media worker %s: stopping", worker.id)
        await worker.close()
