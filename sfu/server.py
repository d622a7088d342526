"""The SFU: the process's rooms, by id."""

from __future__ import annotations

import asyncio

from .ports import PortAllocator
from .room import Room
from .settings import MediaSettings, RoomOptions


class SFU:
    """Holds rooms by id; the gateway creates one per process with the `media:` settings."""

    def __init__(self, settings: MediaSettings | None = None) -> None:
        self.settings = settings or MediaSettings()
        self.ports = PortAllocator(self.settings.rtp_port_min, self.settings.rtp_port_max)
        self.rooms: dict[str, Room] = {}

    def room(self, room_id: str, options: RoomOptions | None = None) -> Room:
        """The room with this id, created with `options` if it does not exist (options of an existing room stay)."""
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            room = Room(room_id, self.settings, options or RoomOptions(), self.ports)
            self.rooms[room_id] = room
            room.on("closed", lambda: self._forget(room_id, room))
        return room

    def get(self, room_id: str) -> Room | None:
        return self.rooms.get(room_id)

    def _forget(self, room_id: str, room: Room) -> None:
        if self.rooms.get(room_id) is room:
            del self.rooms[room_id]

    async def close_room(self, room_id: str, reason: str = "room closed") -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            await room.close(reason)

    async def close(self) -> None:
        await asyncio.gather(*(room.close("shutdown") for room in list(self.rooms.values())))
