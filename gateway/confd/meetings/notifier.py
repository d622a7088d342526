"""Meeting events, named and routed as Wazo's: a tenant event for admins, a per-user one for each owner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.events import Event, EventBus

if TYPE_CHECKING:
    from gateway.confd.meetings.service import MeetingRecord


class MeetingNotifier:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def _tenant_event(self, name: str, meeting: MeetingRecord, key: str, data: dict[str, Any]) -> None:
        self._bus.publish(Event(name, meeting.tenant_uuid, data, f"events.config.meetings.{key}"))

    def created(self, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        self._tenant_event("meeting_created", meeting, "created", data)

    def updated(self, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        self._tenant_event("meeting_updated", meeting, "updated", data)

    def deleted(self, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        self._tenant_event("meeting_deleted", meeting, "deleted", data)

    def ready(self, meeting: MeetingRecord) -> None:
        """Wazo says so after an Asterisk reload; here the meeting is usable the instant it exists."""
        data = {"uuid": str(meeting.uuid), "status": "ready"}
        self._tenant_event("meeting_progress", meeting, "progress", data)
        for owner in meeting.owner_uuids:
            self._bus.publish(
                Event(
                    "meeting_user_progress",
                    meeting.tenant_uuid,
                    {**data, "user_uuid": str(owner)},
                    f"events.users.{owner}.meetings.progress",
                    user_uuid=owner,
                )
            )
