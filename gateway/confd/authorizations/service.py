"""The lobby: guests ask, owners accept or reject; a meeting without the requirement accepts at once."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, select, update

from gateway.confd.authorizations.notifier import AuthorizationNotifier
from gateway.confd.meetings.service import MeetingRecord
from gateway.db.engine import Database
from gateway.db.models import MeetingAuthorization, utcnow
from gateway.http.errors import ApiError, NotFound

MAX_PER_MEETING = 128
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


class TooManyAuthorizations(ApiError):
    status = 400
    error_id = "max-authorizations-reached"


@dataclass(frozen=True)
class Authorization:
    uuid: UUID
    meeting_uuid: UUID
    guest_uuid: UUID
    guest_name: str
    status: str
    creation_time: datetime.datetime

    @classmethod
    def from_row(cls, row: Any) -> Authorization:
        moment = row.creation_time if row.creation_time.tzinfo else row.creation_time.replace(tzinfo=datetime.UTC)
        return cls(row.uuid, row.meeting_uuid, row.guest_uuid, row.guest_name, row.status, moment)

    def to_json(self, meeting: MeetingRecord) -> dict[str, Any]:
        return {
            "uuid": str(self.uuid),
            "meeting_uuid": str(self.meeting_uuid),
            "guest_uuid": str(self.guest_uuid),
            "guest_name": self.guest_name,
            "status": self.status,
            "creation_time": self.creation_time.isoformat(),
            "guest_sip_authorization": meeting.guest_sip_authorization if self.status == ACCEPTED else None,
        }


class AuthorizationService:
    def __init__(self, db: Database, notifier: AuthorizationNotifier) -> None:
        self._db = db
        self._notifier = notifier

    async def create(self, meeting: MeetingRecord, guest_uuid: UUID, guest_name: str) -> Authorization:
        authorization = Authorization(
            uuid.uuid4(),
            meeting.uuid,
            guest_uuid,
            guest_name,
            PENDING if meeting.require_authorization else ACCEPTED,
            utcnow().replace(microsecond=0),
        )
        async with self._db.write() as connection:
            count = (
                await connection.execute(
                    select(func.count())
                    .select_from(MeetingAuthorization)
                    .where(MeetingAuthorization.meeting_uuid == meeting.uuid)
                )
            ).scalar_one()
            if count >= MAX_PER_MEETING:
                raise TooManyAuthorizations(
                    f"This meeting already has {MAX_PER_MEETING} guest authorizations",
                    {"meeting_uuid": str(meeting.uuid)},
                    "meeting_authorizations",
                )
            await connection.execute(
                insert(MeetingAuthorization),
                dict(
                    uuid=authorization.uuid,
                    meeting_uuid=meeting.uuid,
                    guest_uuid=guest_uuid,
                    guest_name=guest_name,
                    status=authorization.status,
                    creation_time=authorization.creation_time,
                ),
            )
        self._notifier.created(meeting, authorization.to_json(meeting))
        return authorization

    async def search(self, meeting: MeetingRecord) -> list[Authorization]:
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(MeetingAuthorization)
                .where(MeetingAuthorization.meeting_uuid == meeting.uuid)
                .order_by(MeetingAuthorization.creation_time, MeetingAuthorization.uuid)
            )
            return [Authorization.from_row(row) for row in rows]

    async def get(
        self, meeting: MeetingRecord, authorization_uuid: UUID, guest_uuid: UUID | None = None
    ) -> Authorization:
        query = select(MeetingAuthorization).where(
            MeetingAuthorization.uuid == authorization_uuid, MeetingAuthorization.meeting_uuid == meeting.uuid
        )
        if guest_uuid is not None:
            query = query.where(MeetingAuthorization.guest_uuid == guest_uuid)
        async with self._db.read() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            raise NotFound("meeting_authorizations", uuid=str(authorization_uuid))
        return Authorization.from_row(row)

    async def decide(self, meeting: MeetingRecord, authorization: Authorization, status: str) -> Authorization:
        async with self._db.write() as connection:
            await connection.execute(
                update(MeetingAuthorization)
                .where(MeetingAuthorization.uuid == authorization.uuid)
                .values(status=status)
            )
        decided = replace(authorization, status=status)
        self._notifier.updated(meeting, decided.to_json(meeting))
        return decided

    async def accept_pending(self, meeting: MeetingRecord) -> None:
        """require_authorization was turned off: whoever waits in the lobby is let in."""
        for authorization in await self.search(meeting):
            if authorization.status == PENDING:
                await self.decide(meeting, authorization, ACCEPTED)

    async def delete(self, meeting: MeetingRecord, authorization: Authorization) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                delete(MeetingAuthorization).where(MeetingAuthorization.uuid == authorization.uuid)
            )
        self._notifier.deleted(meeting, authorization.to_json(meeting))
