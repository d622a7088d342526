"""Rooms in this process: the embedded default, and what a media worker runs behind its RabbitMQ door."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from sfu.events import EventEmitter
from sfu.participant import Participant
from sfu.quality import CallQuality, MediaCounters
from sfu.room import Room
from sfu.rtpleg import RtpLeg
from sfu.server import SFU
from sfu.settings import RoomOptions

from .interface import Listener, SlotView


def slot_views(participant: Participant) -> list[SlotView]:
    return [
        SlotView(str(slot.mid), slot.target.owner_id if slot.target else None,
                 slot.target.content if slot.target else "main", slot.paused)
        for slot in participant.slots
        if slot.active and slot.mid is not None
    ]  # fmt: skip


class LocalParticipant:
    """A MediaParticipant over an `sfu.Participant` of this process (`participant`: for tests and the worker)."""

    def __init__(self, participant: Participant) -> None:
        self.participant = participant

    def __repr__(self) -> str:
        return f"LocalParticipant({self.participant.id!r})"

    @property
    def id(self) -> str:
        return self.participant.id

    @property
    def kind(self) -> str:
        return self.participant.kind

    @property
    def muted(self) -> bool:
        return self.participant.muted

    @property
    def talking(self) -> bool:
        return self.participant.talking

    @property
    def closed(self) -> bool:
        return self.participant.closed

    @property
    def wants_offer(self) -> bool:
        return not self.participant.closed and self.participant.wants_offer

    @property
    def last_received_at(self) -> float | None:
        return cast(float | None, getattr(self.participant.leg, "last_received_at", None))

    @property
    def receives_audio(self) -> bool:
        return bool(getattr(self.participant.leg, "receives_audio", True))

    @property
    def quality(self) -> CallQuality:
        return self.participant.quality

    def video_slots(self) -> list[SlotView]:
        return slot_views(self.participant)

    def on(self, event: str, listener: Listener) -> Any:
        return self.participant.on(event, listener)

    async def create_slots_offer(self) -> str | None:
        if not self.wants_offer:
            return None
        return await self.participant.create_slots_offer()

    async def accept_slots_answer(self, answer: str) -> None:
        await self.participant.accept_slots_answer(answer)

    async def handle_offer(self, offer: str) -> str:
        return await self.participant.handle_offer(offer)

    async def accept_answer(self, answer: str) -> None:
        await cast(RtpLeg, self.participant.leg).accept_answer(answer)

    def request_keyframes(self) -> None:
        self.participant.request_keyframes()

    def set_muted(self, muted: bool) -> None:
        self.participant.set_muted(muted)

    def toggle_mute(self) -> None:
        self.participant.toggle_mute()

    def pin(self, participant_id: str | None) -> None:
        self.participant.pin(participant_id)

    async def close(self, reason: str) -> None:
        await self.participant.close(reason)


class LocalRoom(EventEmitter):
    """A MediaRoom over an `sfu.Room` of this process (`room`: for tests and the worker)."""

    def __init__(self, room: Room) -> None:
        super().__init__()
        self.room = room
        self.participants: dict[str, LocalParticipant] = {}
        room.on("participant_joined", lambda p: self.emit("joined", p.id))
        room.on("participant_left", self._left)
        room.on("talking_started", lambda p: self.emit("talking", p.id, True))
        room.on("talking_stopped", lambda p: self.emit("talking", p.id, False))
        room.on("participant_muted", lambda p, muted: self.emit("muted", p.id, muted))
        room.on("video_changed", lambda: self.emit("video_changed"))
        room.on("video_sources_changed", lambda: self.emit("video_changed"))
        room.on("video_paused", lambda _subscriber: self.emit("video_changed"))
        room.on("closed", self._closed)

    def __repr__(self) -> str:
        return f"LocalRoom({self.room!r})"

    @property
    def id(self) -> str:
        return self.room.id

    @property
    def closed(self) -> bool:
        return self.room.closed

    @property
    def participant_count(self) -> int:
        return len(self.room.participants)

    def set_options(self, options: RoomOptions) -> None:
        self.room.options = replace(options)

    def _left(self, participant: Participant, reason: str) -> None:
        self.participants.pop(participant.id, None)
        self.emit("left", participant.id, reason)

    def _closed(self) -> None:
        self.emit("closed")
        self.remove_all_listeners()

    def _handle(self, joined: tuple[Participant, str]) -> tuple[LocalParticipant, str]:
        participant, sdp = joined
        handle = LocalParticipant(participant)
        if not participant.closed:
            self.participants[participant.id] = handle
        return handle, sdp

    async def join_webrtc(
        self, offer: str, info: dict[str, Any], *, max_participants: int
    ) -> tuple[LocalParticipant, str]:
        return self._handle(await self.room.join_webrtc(offer, info, max_participants=max_participants))

    async def join_rtp(
        self, offer: str, info: dict[str, Any], *, max_participants: int
    ) -> tuple[LocalParticipant, str]:
        return self._handle(await self.room.join_rtp(offer, info, max_participants=max_participants))

    async def join_rtp_outbound(self, info: dict[str, Any], *, max_participants: int) -> tuple[LocalParticipant, str]:
        return self._handle(await self.room.join_rtp_outbound(info, max_participants=max_participants))

    async def close(self, reason: str) -> None:
        await self.room.close(reason)


class LocalMedia:
    """MediaRooms in this process, over one `sfu.SFU` (`sfu`: for tests)."""

    def __init__(self, sfu: SFU) -> None:
        self.sfu = sfu
        self.rooms: dict[str, LocalRoom] = {}

    async def start(self) -> None:
        """Nothing to reach: the rooms are here."""

    async def room(self, room_id: str, options: RoomOptions) -> LocalRoom:
        return self.open_room(room_id, options)

    def open_room(self, room_id: str, options: RoomOptions) -> LocalRoom:
        room = self.rooms.get(room_id)
        if room is not None and not room.closed:
            room.set_options(options)
            return room
        room = LocalRoom(self.sfu.room(room_id, replace(options)))
        self.rooms[room_id] = room
        room.on("closed", lambda: self._forget(room_id, room))
        return room

    def _forget(self, room_id: str, room: LocalRoom) -> None:
        if self.rooms.get(room_id) is room:
            del self.rooms[room_id]

    def census(self) -> tuple[int, int]:
        """Open rooms, and participants in them."""
        rooms = [room for room in self.rooms.values() if not room.closed]
        return len(rooms), sum(room.participant_count for room in rooms)

    def media_counters(self) -> MediaCounters:
        return self.sfu.media_counters()

    async def close(self) -> None:
        await self.sfu.close()
