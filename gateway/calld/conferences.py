"""Who is in each meeting right now, how to hang each one up, and the join/leave events.

Runtime state only: call control adds a participant when his INVITE is answered and removes him when his call
ends; the calld endpoints read and kick through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from gateway.events import Event, EventBus


@dataclass
class Participant:
    id: str
    meeting_uuid: UUID
    tenant_uuid: UUID
    caller_id_name: str
    caller_id_number: str
    call_id: str
    user_uuid: UUID | None
    hangup: Callable[[str], Awaitable[None]] = field(repr=False)
    talking: bool = False
    muted: bool = False
    #: webrtc (a browser), phone (plain RTP) or bridge (the Asterisk ConfBridge leg)
    kind: str = "webrtc"
    #: mutes or unmutes him in the room (his audio no longer mixed; everyone is told), where the call allows it
    mute: Callable[[bool], None] | None = field(default=None, repr=False)
    #: his call quality now, as the API shows it (sfu.quality.CallQuality.to_json)
    quality: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "caller_id_name": self.caller_id_name,
            "caller_id_number": self.caller_id_number,
            "call_id": self.call_id,
            "user_uuid": str(self.user_uuid) if self.user_uuid else None,
        }

    def to_json_with_quality(self) -> dict[str, Any]:
        """With `call_quality` (beyond Wazo: its clients ignore the field), for the participants API and the live
        view; events go without it."""
        return {**self.to_json(), "call_quality": self.quality() if self.quality is not None else None}


class Conferences:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._rooms: dict[UUID, dict[str, Participant]] = {}
        self._owners: dict[UUID, tuple[UUID, ...]] = {}

    def participants(self, meeting_uuid: UUID) -> list[Participant]:
        return list(self._rooms.get(meeting_uuid, {}).values())

    def census(self) -> tuple[int, dict[str, int]]:
        """How many rooms have someone in them, and how many participants of each kind there are."""
        kinds: dict[str, int] = {}
        for room in self._rooms.values():
            for participant in room.values():
                kinds[participant.kind] = kinds.get(participant.kind, 0) + 1
        return len(self._rooms), kinds

    def rooms(self) -> dict[UUID, list[Participant]]:
        """Every meeting with someone in it, and who."""
        return {meeting_uuid: list(room.values()) for meeting_uuid, room in self._rooms.items()}

    def count(self, meeting_uuid: UUID) -> int:
        return len(self._rooms.get(meeting_uuid, ()))

    def get(self, meeting_uuid: UUID, participant_id: str) -> Participant | None:
        return self._rooms.get(meeting_uuid, {}).get(participant_id)

    def add(self, participant: Participant, owners: tuple[UUID, ...]) -> None:
        self._rooms.setdefault(participant.meeting_uuid, {})[participant.id] = participant
        self._owners[participant.meeting_uuid] = owners
        self._publish("joined", participant)

    def remove(self, participant: Participant) -> None:
        room = self._rooms.get(participant.meeting_uuid)
        if room is None or room.pop(participant.id, None) is None:
            return
        self._publish("left", participant)
        if not room:
            del self._rooms[participant.meeting_uuid]
            self._owners.pop(participant.meeting_uuid, None)

    async def kick(self, meeting_uuid: UUID, participant_id: str, reason: str = "kicked") -> bool:
        participant = self.get(meeting_uuid, participant_id)
        if participant is None:
            return False
        await participant.hangup(reason)
        self.remove(participant)
        return True

    def mute(self, meeting_uuid: UUID, participant_id: str, muted: bool) -> bool:
        """The organiser mutes (or unmutes) someone; False if there is no such participant (or he cannot be)."""
        participant = self.get(meeting_uuid, participant_id)
        if participant is None or participant.mute is None:
            return False
        participant.mute(muted)
        return True

    async def hang_up_all(self, meeting_uuid: UUID, reason: str) -> None:
        """Everyone at once: one unreachable phone must not hold up the others' BYE."""

        async def hang_up(participant: Participant) -> None:
            try:
                await participant.hangup(reason)
            finally:
                self.remove(participant)

        await asyncio.gather(*(hang_up(p) for p in self.participants(meeting_uuid)), return_exceptions=True)

    def _publish(self, action: str, participant: Participant) -> None:
        meeting = participant.meeting_uuid
        data = {**participant.to_json(), "meeting_uuid": str(meeting)}
        self._bus.publish(
            Event(
                f"meeting_participant_{action}",
                participant.tenant_uuid,
                data,
                f"events.calls.meetings.{meeting}.participants.{action}",
            )
        )
        # The per-user copy goes to the owners and to the users in the room, whose apps draw the list.
        users = set(self._owners.get(meeting, ()))
        users.update(p.user_uuid for p in self.participants(meeting) if p.user_uuid)
        if participant.user_uuid:
            users.add(participant.user_uuid)
        for user in users:
            self._bus.publish(
                Event(
                    f"meeting_user_participant_{action}",
                    participant.tenant_uuid,
                    {**data, "user_uuid": str(user)},
                    f"events.users.{user}.meetings.{meeting}.participants.{action}",
                    user_uuid=user,
                )
            )
