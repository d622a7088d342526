"""Rooms in media workers (`gateway.media.worker`), as call control sees them: the same interface as in-process
rooms, carried over RabbitMQ (`gateway.media.wire`).

The control role listens to the workers' announcements and places each new room on the least-loaded worker heard
of lately. A room's participants are copies: what call control reads synchronously (muted, slots, whether an offer
is wanted, call quality, when RTP last came) is the state the worker sent with its last event or reply; commands go
to the worker, in order.

A worker not heard of for `wire.WORKER_SILENCE_SECONDS` is taken for dead (killed, or cut off): each of its rooms is
opened again, with the same options, on the least-loaded live worker, and the room says ``moved``: call control
brings each participant back into it (same participant id) by re-INVITE. With no live worker left, the rooms close
and their participants with them. A worker taken for dead that speaks again (a network partition) is told to close
the rooms it no longer holds for this control role.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from gateway.broker import connect
from sfu.errors import SfuError
from sfu.events import EventEmitter
from sfu.quality import MediaCounters
from sfu.settings import RoomOptions

from . import wire
from .interface import MediaUnavailable, SlotView

logger = logging.getLogger(__name__)

#: how long a new room waits for a first worker to announce itself (the workers `serve` starts take a moment)
PLACEMENT_WAIT = 10.0
#: how much the last RTP time of a participant copy may move before it is taken as new (transit jitter)
RECEIVED_SLACK = 0.05
#: why a room's participants are ended when its worker is lost and no other can take the room
NO_WORKER_LEFT = "media server lost, and no other media server to move the meeting to"


@dataclass
class WorkerInfo:
    """A media worker as its last announcement described it."""

    id: str
    queue: str
    pid: int = 0
    host: str = ""
    rooms: int = 0
    participants: int = 0
    cpu: float = 0.0
    interval: float = wire.ANNOUNCE_SECONDS
    counters: MediaCounters = field(default_factory=MediaCounters)
    seen_at: float = 0.0

    def alive(self, now: float) -> bool:
        return now - self.seen_at <= max(wire.WORKER_SILENCE_SECONDS, wire.ANNOUNCE_MISSED * self.interval)


class Quality:
    """A participant's call quality as the worker last reported it."""

    def __init__(self) -> None:
        self.now: dict[str, Any] = {}
        self.whole: dict[str, Any] = {}
        self.text = "no figures from the media worker"

    def to_json(self) -> dict[str, Any]:
        return self.now

    def summary(self) -> dict[str, Any]:
        return self.whole

    def describe(self) -> str:
        return self.text


class RemoteParticipant(EventEmitter):
    """A MediaParticipant whose leg is in a media worker."""

    def __init__(self, room: RemoteRoom, state: dict[str, Any]) -> None:
        super().__init__()
        self.room = room
        #: where his leg is (the room may move on without him: a copy of a lost leg)
        self.worker = room.worker
        self.id = str(state["id"])
        self.kind = str(state["kind"])
        self.muted = False
        self.closed = False
        self.wants_offer = False
        self.last_received_at: float | None = None
        self.receives_audio = True
        self.quality = Quality()
        self._slots: list[SlotView] = []
        self._finished = False
        self.apply(state)

    def __repr__(self) -> str:
        return f"RemoteParticipant({self.id!r} on {self.worker.id})"

    def apply(self, state: dict[str, Any]) -> None:
        self.muted = bool(state["muted"])
        self.closed = self.closed or bool(state["closed"])
        self.wants_offer = bool(state["wants_offer"]) and not self.closed
        self._slots = [SlotView.from_json(slot) for slot in state["slots"]]
        self.receives_audio = bool(state["receives_audio"])
        ago = state.get("received_ago")
        if ago is not None:
            received = time.monotonic() - float(ago)
            if self.last_received_at is None or abs(received - self.last_received_at) > RECEIVED_SLACK:
                self.last_received_at = received
        if "quality" in state:
            self.quality.now = state["quality"]
        if "summary" in state:
            self.quality.whole = state["summary"]
            self.quality.text = state["describe"]

    def video_slots(self) -> list[SlotView]:
        return list(self._slots)

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        if self.worker is not self.room.worker:
            raise MediaUnavailable(f"participant {self.id}: his media worker {self.worker.id} is lost")
        result: dict[str, Any] = await self.room.media.request(self.worker, op, participant=self.id, **args)
        if result.get("state") is not None:
            self.apply(result["state"])
        return result

    async def create_slots_offer(self) -> str | None:
        sdp = (await self._call("slots_offer"))["sdp"]
        return str(sdp) if sdp is not None else None

    async def accept_slots_answer(self, answer: str) -> None:
        await self._call("slots_answer", sdp=answer)

    async def handle_offer(self, offer: str) -> str:
        return str((await self._call("offer", sdp=offer))["sdp"])

    async def accept_answer(self, answer: str) -> None:
        await self._call("answer", sdp=answer)

    def _command(self, op: str, **args: Any) -> None:
        if not self.closed:
            self.room.media.command(self.worker, op, participant=self.id, **args)

    def request_keyframes(self) -> None:
        self._command("keyframes")

    def set_muted(self, muted: bool) -> None:
        self._command("set_muted", muted=muted)

    def toggle_mute(self) -> None:
        self._command("toggle_mute")

    def pin(self, participant_id: str | None) -> None:
        self._command("pin", pinned=participant_id)

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        try:
            await self.room.media.request(self.worker, "close", participant=self.id, reason=reason)
        except SfuError as exc:
            logger.warning("%s: not closed on its media worker (%s)", self.id, exc)
        self._ended(reason)

    def _ended(self, reason: str) -> None:
        if self._finished:
            return
        self._finished = self.closed = True
        self.wants_offer = False
        self.room.participants.pop(self.id, None)
        self.emit("closed", reason)
        self.remove_all_listeners()

    def _lost(self) -> None:
        """His leg was on a worker taken for dead: this copy ends without a ``closed`` event (his call is not over:
        he joins the room again where it moved)."""
        self._finished = self.closed = True
        self.wants_offer = False
        self.remove_all_listeners()


class RemoteRoom(EventEmitter):
    """A MediaRoom in a media worker."""

    def __init__(self, media: RemoteMedia, room_id: str, worker: WorkerInfo, options: RoomOptions) -> None:
        super().__init__()
        self.media = media
        self.id = room_id
        self.worker = worker
        #: what it was opened with, and set since: it is opened again with them if it moves to another worker
        self.options = options
        self.closed = False
        self.participants: dict[str, RemoteParticipant] = {}
        self.participant_count = 0
        #: participant ids are given here rather than by the worker, so that they stay unique when the room moves
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"RemoteRoom({self.id!r} on {self.worker.id}, {self.participant_count} participants)"

    def set_options(self, options: RoomOptions) -> None:
        if not self.closed:
            self.options = options
            self.media.command(self.worker, "options", room=self.id, options=wire.options_to_json(options))

    async def _join(self, kind: str, offer: str | None, info: dict[str, Any], max_participants: int) -> Any:
        if not info.get("participant_id"):
            info = {**info, "participant_id": f"{self.id}-{next(self._ids)}"}
        result = await self.media.request(
            self.worker, "join", room=self.id, kind=kind, offer=offer, info=info, max_participants=max_participants
        )
        participant = RemoteParticipant(self, result["participant"])
        if not participant.closed:
            self.participants[participant.id] = participant
        return participant, str(result["sdp"])

    async def join_webrtc(
        self, offer: str, info: dict[str, Any], *, max_participants: int
    ) -> tuple[RemoteParticipant, str]:
        joined: tuple[RemoteParticipant, str] = await self._join("webrtc", offer, info, max_participants)
        return joined

    async def join_rtp(
        self, offer: str, info: dict[str, Any], *, max_participants: int
    ) -> tuple[RemoteParticipant, str]:
        joined: tuple[RemoteParticipant, str] = await self._join("rtp", offer, info, max_participants)
        return joined

    async def join_rtp_outbound(self, info: dict[str, Any], *, max_participants: int) -> tuple[RemoteParticipant, str]:
        joined: tuple[RemoteParticipant, str] = await self._join("rtp", None, info, max_participants)
        return joined

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        try:
            await self.media.request(self.worker, "close_room", room=self.id, reason=reason)
        except SfuError as exc:
            logger.warning("room %s: not closed on its media worker (%s)", self.id, exc)
        self._ended()

    def _ended(self, reason: str = "room closed") -> None:
        if self.closed:
            return
        self.closed = True
        for participant in list(self.participants.values()):
            participant._ended(reason)
        self.media._forget(self)
        self.emit("closed")
        self.remove_all_listeners()

    def _moved(self, worker: WorkerInfo) -> None:
        """Opened again, empty, on `worker` (its worker was lost): the participant copies of the lost legs end
        quietly, and call control is told to bring everyone back."""
        self.worker = worker
        for participant in list(self.participants.values()):
            participant._lost()
        self.participants.clear()
        self.participant_count = 0
        self.emit("moved")

    def on_event(self, body: dict[str, Any]) -> None:
        """An event of the worker's room, with its participants' states at that moment."""
        states = body.get("states", [])
        self.participant_count = len(states)
        for state in states:
            participant = self.participants.get(str(state["id"]))
            if participant is not None:
                participant.apply(state)
        name, args = str(body["event"]), list(body.get("args", []))
        if name == "participant_closed":
            participant = self.participants.get(str(args[0]))
            if participant is not None:
                participant.apply(body["participant"])
                participant._ended(str(args[1]))
        elif name == "picture_fast_update":
            participant = self.participants.get(str(args[0]))
            if participant is not None:
                participant.emit("picture_fast_update")
        elif name == "closed":
            self._ended()
        elif name != "tick":
            self.emit(name, *args)


class RemoteMedia:
    """MediaRooms in media workers, placed on the least-loaded one."""

    def __init__(
        self,
        url: str,
        exchange: str,
        *,
        request_timeout: float = 10.0,
        placement_wait: float = PLACEMENT_WAIT,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.id = uuid.uuid4().hex[:12]
        self.queue_name = wire.control_queue(exchange, self.id)
        self.request_timeout = request_timeout
        self.placement_wait = placement_wait
        self.workers: dict[str, WorkerInfo] = {}
        self.rooms: dict[str, RemoteRoom] = {}
        self._placing: dict[str, asyncio.Future[RemoteRoom]] = {}
        #: (worker id, room id) of the rooms being opened: a worker listing one in its announcement is not told to
        #: close it
        self._opening: set[tuple[str, str]] = set()
        self._pending: dict[str, tuple[WorkerInfo, asyncio.Future[dict[str, Any]]]] = {}
        self._announced = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._commands: asyncio.Queue[tuple[WorkerInfo, dict[str, Any]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._moves: set[asyncio.Task[None]] = set()
        #: what workers gone counted, and what /metrics was last given (counters never go down)
        self._retired = MediaCounters()
        self._exposed = MediaCounters()

    async def start(self) -> None:
        """Connect in the background (start-up does not wait for the broker; placements wait for a worker)."""
        self._tasks = [
            asyncio.create_task(self._connect()),
            asyncio.create_task(self._send_commands()),
            asyncio.create_task(self._watch_workers()),
        ]

    async def _connect(self) -> None:
        self._connection = await connect(self.url, f"meetings control {self.id}")
        # a request to a worker whose queue is gone comes back at once rather than after the timeout
        channel = self._channel = await self._connection.channel(on_return_raises=True)
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key=wire.ANNOUNCE)
        await queue.consume(self._on_message, no_ack=True)
        await self._exchange.publish(wire.message({}, type=wire.DISCOVER), routing_key=wire.DISCOVER, mandatory=False)
        logger.info("media: rooms go to media workers on %s", self.exchange_name)

    async def close(self) -> None:
        await asyncio.gather(*(room.close("shutdown") for room in list(self.rooms.values())), return_exceptions=True)
        for task in [*self._tasks, *self._moves]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for _, pending in self._pending.values():
            if not pending.done():
                pending.set_exception(MediaUnavailable("the control role is stopping"))
        if self._connection is not None:
            await self._connection.close()

    # -- workers
    def alive_workers(self) -> list[WorkerInfo]:
        now = time.monotonic()
        return [worker for worker in self.workers.values() if worker.alive(now)]

    def _load(self, worker: WorkerInfo) -> tuple[int, int, float, str]:
        """Participants, then rooms (what it announced, or what this control placed there since, if more)."""
        mine = [room for room in self.rooms.values() if room.worker is worker and not room.closed]
        participants = max(worker.participants, sum(room.participant_count for room in mine))
        return participants, max(worker.rooms, len(mine)), worker.cpu, worker.id

    async def _choose_worker(self) -> WorkerInfo:
        deadline = time.monotonic() + self.placement_wait
        while not (alive := self.alive_workers()):
            self._announced.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise MediaUnavailable("no media worker has announced itself")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._announced.wait(), left)
        return min(alive, key=self._load)

    def _announcement(self, body: dict[str, Any]) -> None:
        worker_id = str(body["worker"])
        worker = self.workers.get(worker_id)
        if body.get("gone"):
            if worker is not None:
                self._retired.add(wire.counters_from_json(body.get("counters", {})))
                del self.workers[worker_id]
                logger.info("media worker %s stopped", worker_id)
                # it closed its rooms before saying goodbye (their calls end): any left end here
                for room in [room for room in self.rooms.values() if room.worker is worker]:
                    room._ended()
            return
        if worker is None:
            worker = self.workers[worker_id] = WorkerInfo(worker_id, str(body["queue"]))
            logger.info("media worker %s (pid %s on %s) announced itself", worker_id, body.get("pid"), body.get("host"))
        worker.pid = int(body.get("pid", 0))
        worker.host = str(body.get("host", ""))
        worker.rooms = int(body.get("rooms", 0))
        worker.participants = int(body.get("participants", 0))
        worker.cpu = float(body.get("cpu", 0.0))
        worker.interval = float(body.get("interval", wire.ANNOUNCE_SECONDS))
        worker.counters = wire.counters_from_json(body.get("counters", {}))
        worker.seen_at = time.monotonic()
        self._announced.set()
        for room_id in body.get("owned", {}).get(self.queue_name, []):
            held = self.rooms.get(room_id)
            held_there = held is not None and held.worker is worker
            if not held_there and room_id not in self._placing and (worker_id, room_id) not in self._opening:
                self._close_stale(worker, room_id)

    def _close_stale(self, worker: WorkerInfo, room_id: str) -> None:
        """The worker still has a room this control role holds elsewhere now (or closed): it is told to close it."""
        logger.info("media worker %s still has room %s, moved away or closed: closing it there", worker.id, room_id)
        self.command(worker, "close_room", room=room_id, reason="moved to another media worker")

    async def _watch_workers(self) -> None:
        """Take a worker that has gone silent for dead, and move its rooms."""
        while True:
            await asyncio.sleep(wire.ANNOUNCE_SECONDS / 2)
            now = time.monotonic()
            for worker in [worker for worker in self.workers.values() if not worker.alive(now)]:
                self._worker_lost(worker, now - worker.seen_at)

    def _worker_lost(self, worker: WorkerInfo, silence: float) -> None:
        rooms = [room for room in self.rooms.values() if room.worker is worker and not room.closed]
        logger.warning("media worker %s (pid %d on %s) not heard of for %.1f s: taken for dead, %d rooms to move",
                       worker.id, worker.pid, worker.host, silence, len(rooms))  # fmt: skip
        del self.workers[worker.id]
        self._retired.add(worker.counters)
        for correlation, (target, pending) in list(self._pending.items()):
            if target is worker and not pending.done():
                pending.set_exception(MediaUnavailable(f"media worker {worker.id} is lost"))
                del self._pending[correlation]
        for room in rooms:
            task = asyncio.get_running_loop().create_task(self._move(room, worker))
            self._moves.add(task)
            task.add_done_callback(self._moves.discard)

    async def _move(self, room: RemoteRoom, lost: WorkerInfo) -> None:
        """Open the room again on the least-loaded live worker (the next one if that fails), then have its
        participants brought back (``moved``); with none left, the room ends."""
        for worker in sorted(self.alive_workers(), key=self._load):
            if room.closed:
                return
            try:
                await self._open(worker, room.id, room.options)
            except SfuError as exc:
                logger.warning("room %s: not opened on media worker %s (%s)", room.id, worker.id, exc)
                continue
            if room.closed:  # everyone left meanwhile
                self.command(worker, "close_room", room=room.id, reason="empty")
                return
            logger.info("room %s moved from lost media worker %s to %s", room.id, lost.id, worker.id)
            self.command(lost, "close_room", room=room.id, reason="moved to another media worker")
            room._moved(worker)
            return
        logger.warning("room %s: its media worker %s is lost and no other can take it", room.id, lost.id)
        room._ended(NO_WORKER_LEFT)

    # -- rooms
    async def room(self, room_id: str, options: RoomOptions) -> RemoteRoom:
        room = self.rooms.get(room_id)
        if room is not None and not room.closed:
            room.set_options(options)
            return room
        placing = self._placing.get(room_id)
        if placing is not None:
            return await asyncio.shield(placing)
        future: asyncio.Future[RemoteRoom] = asyncio.get_running_loop().create_future()
        self._placing[room_id] = future
        try:
            worker = await self._choose_worker()
            await self._open(worker, room_id, options)
            room = RemoteRoom(self, room_id, worker, options)
            self.rooms[room_id] = room
            logger.info("room %s placed on media worker %s", room_id, worker.id)
            future.set_result(room)
            return room
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # read: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._placing[room_id]

    async def _open(self, worker: WorkerInfo, room_id: str, options: RoomOptions) -> None:
        self._opening.add((worker.id, room_id))
        try:
            options_json = wire.options_to_json(options)
            await self.request(worker, "open", room=room_id, options=options_json, owner=self.queue_name)
        finally:
            self._opening.discard((worker.id, room_id))

    def _forget(self, room: RemoteRoom) -> None:
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]

    def media_counters(self) -> MediaCounters:
        counters = MediaCounters()
        counters.add(self._retired)
        for worker in self.workers.values():
            counters.add(worker.counters)
        self._exposed.raise_to(counters)
        result = MediaCounters()
        result.add(self._exposed)
        return result

    # -- requests, commands, replies and events
    async def request(self, worker: WorkerInfo, op: str, **args: Any) -> Any:
        """Ask the worker and wait for its answer (its error raised here as the same sfu error)."""
        channel = self._channel
        if channel is None:
            raise MediaUnavailable("not connected to the broker")
        correlation = uuid.uuid4().hex
        pending: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = (worker, pending)
        try:
            body = {"op": op, "args": args}
            outgoing = wire.message(body, reply_to=self.queue_name, correlation_id=correlation, type="request")
            try:
                await channel.default_exchange.publish(outgoing, routing_key=worker.queue, timeout=self.request_timeout)
            except Exception as exc:
                raise MediaUnavailable(f"media worker {worker.id} cannot be reached: {exc}") from None
            try:
                reply = await asyncio.wait_for(pending, self.request_timeout)
            except TimeoutError:
                raise MediaUnavailable(f"media worker {worker.id} did not answer {op} in time") from None
        finally:
            self._pending.pop(correlation, None)
        if "error" in reply:
            raise wire.error_from_json(reply)
        return reply.get("result")

    def command(self, worker: WorkerInfo, op: str, **args: Any) -> None:
        """Tell the worker, with no answer awaited (in order with the other commands)."""
        self._commands.put_nowait((worker, {"op": op, "args": args}))

    async def _send_commands(self) -> None:
        while True:
            worker, body = await self._commands.get()
            channel = self._channel
            try:
                if channel is None:
                    raise ConnectionError("not connected")
                await channel.default_exchange.publish(wire.message(body, type="command"), routing_key=worker.queue)
            except Exception as exc:
                logger.warning("media worker %s: %s not sent (%s)", worker.id, body["op"], exc)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        try:
            body = json.loads(incoming.body)
            if incoming.type == "reply":
                waiting = self._pending.get(incoming.correlation_id or "")
                if waiting is not None and not waiting[1].done():
                    waiting[1].set_result(body)
            elif incoming.type == "announce":
                self._announcement(body)
            elif incoming.type == "event":
                room = self.rooms.get(str(body["room"]))
                worker_id = str(body.get("worker", ""))
                if room is not None and (not worker_id or worker_id == room.worker.id):
                    room.on_event(body)
                elif room is not None and body["event"] != "closed":
                    # the room has moved away from the worker that speaks of it
                    worker = self.workers.get(worker_id) or WorkerInfo(
                        worker_id, wire.worker_queue(self.exchange_name, worker_id)
                    )
                    self._close_stale(worker, room.id)
        except Exception:
            logger.exception("media: a message from a worker could not be used")
