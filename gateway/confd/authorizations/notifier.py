"""Lobby events: the tenant event for admins, a per-user copy for each owner; never to anyone else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.events import Event, EventBus

if TYPE_CHECKING:
    from gateway.confd.meetings.service import MeetingRecord


class AuthorizationNotifier:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def _publish(self, action: str, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        guest = data["guest_uuid"]
        self._bus.publish(
            Event(
                f"meeting_guest_authorization_{action}",
                meeting.tenant_uuid,
                data,
                f"events.meetings.{meeting.uuid}.guests.{guest}.authorizations.{action}",
            )
        )
        for owner in meeting.owner_uuids:
            self._bus.publish(
                Event(
                    f"meeting_user_guest_authorization_{action}",
                    meeting.tenant_uuid,
                    {**data, "user_uuid": str(owner)},
                    f"events.users.{owner}.meetings.{meeting.uuid}.guests.{guest}.authorizations.{action}",
                    user_uuid=owner,
                )
            )

    def created(self, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        self._publish("created", meeting, data)

    def updated(self, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        self._publish("updated", meeting, data)

    def deleted(self, meeting: MeetingRecord, data: dict[str, Any]) -> None:
        self._publish("deleted", meeting, data)
