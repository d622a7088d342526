"""The SFU: the process's rooms, by id."""

from __future__ import annotations

import asyncio

from .ports import PortAllocator
from .quality import MediaCounters
from .room import Room
from .settings import MediaSettings, RoomOptions


class SFU:
    """Holds rooms by id; the gateway creates one per process with the `media:` settings."""

    def __init__(self, settings: MediaSettings | None = None) -> None:
        self.settings = settings or MediaSettings()
        self.ports = PortAllocator(self.settings.rtp_port_min, self.settings.rtp_port_max)
        self.rooms: dict[str, Room] = {}
        #: what rooms now closed counted; what /metrics was last given (counters there never go down)
        self._retired = MediaCounters()
        self._exposed = MediaCounters()

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
        self._retired.add(room.media_counters())
        if self.rooms.get(room_id) is room:
            del self.rooms[room_id]

    def media_counters(self) -> MediaCounters:
        """Everything the process's media counted since it started (each figure never lower than last time: a
        receiver's report may revise its loss count down)."""
        counters = MediaCounters()
        counters.add(self._retired)
        for room in list(self.rooms.values()):
            counters.add(room.media_counters())
        self._exposed.raise_to(counters)
        result = MediaCounters()
        result.add(self._exposed)
        return result

    async def close_room(self, room_id: str, reason: str = "room closed") -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            await room.close(reason)

    async def close(self) -> None:
        await asyncio.gather(*(room.close("shutdown") for room in list(self.rooms.values())))
