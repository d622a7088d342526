"""Meetings: the rules. Owners of the same tenant, a guest SIP account and an exten each, expiry, events."""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.auth.passwords import random_secret
from gateway.confd.ingresses.service import IngressService
from gateway.confd.meetings.notifier import MeetingNotifier
from gateway.db.engine import Database, DbConnection
from gateway.db.models import Meeting, MeetingOwner, User, utcnow
from gateway.http.errors import InvalidData, NotFound, ServiceUnavailable
from gateway.http.lists import ListParams

ORDERABLE = ("name", "creation_time", "persistent", "require_authorization", "exten")
GUEST_USERNAME = "wazo-meeting-{uuid}-guest"


@dataclass(frozen=True)
class MeetingRecord:
    uuid: UUID
    tenant_uuid: UUID
    name: str
    owner_uuids: tuple[UUID, ...]
    persistent: bool
    require_authorization: bool
    creation_time: datetime.datetime
    exten: str
    guest_sip_username: str
    guest_sip_password: str
    # When the meeting last became non-persistent; None: it never was persistent, the clock runs from creation.
    expiry_start: datetime.datetime | None = None

    @property
    def guest_sip_authorization(self) -> str:
        return base64.b64encode(f"{self.guest_sip_username}:{self.guest_sip_password}".encode()).decode()

    def expire_time(self, expiry_seconds: int) -> datetime.datetime | None:
        if self.persistent:
            return None
        return (self.expiry_start or self.creation_time) + datetime.timedelta(seconds=expiry_seconds)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _record(row: Any, owners: tuple[UUID, ...]) -> MeetingRecord:
    return MeetingRecord(
        row.uuid, row.tenant_uuid, row.name, owners, row.persistent, row.require_authorization,
        _aware(row.creation_time), row.exten, row.guest_sip_username, row.guest_sip_password,
        _aware(row.expiry_start) if row.expiry_start else None,
    )  # fmt: skip


class MeetingService:
    def __init__(
        self,
        db: Database,
        ingresses: IngressService,
        notifier: MeetingNotifier,
        exten_prefix: str,
        expiry_seconds: int,
    ) -> None:
        self._db = db
        self._ingresses = ingresses
        self._notifier = notifier
        self._exten_prefix = exten_prefix
        self.expiry_seconds = expiry_seconds
        # Called when require_authorization is turned off: the lobby accepts whoever waits.
        self.on_authorization_lifted: list[Callable[[MeetingRecord], Any]] = []

    # --- what a meeting looks like to each audience

    def to_json(self, meeting: MeetingRecord, with_credentials: bool) -> dict[str, Any]:
        expire_time = meeting.expire_time(self.expiry_seconds)
        show_credentials = with_credentials and not meeting.require_authorization
        return {
            "uuid": str(meeting.uuid),
            "tenant_uuid": str(meeting.tenant_uuid),
            "name": meeting.name,
            "owner_uuids": [str(owner) for owner in meeting.owner_uuids],
            "persistent": meeting.persistent,
            "require_authorization": meeting.require_authorization,
            "ingress_http_uri": self._ingresses.uri_for(meeting.tenant_uuid),
            "guest_sip_authorization": meeting.guest_sip_authorization if show_credentials else None,
            "exten": meeting.exten,
            "creation_time": meeting.creation_time.isoformat(),
            "expire_time": expire_time.isoformat() if expire_time else None,
        }

    def guest_json(self, meeting: MeetingRecord) -> dict[str, Any]:
        """What a guest app needs to join, and nothing about owners or the tenant."""
        full = self.to_json(meeting, with_credentials=True)
        keys = ("uuid", "name", "ingress_http_uri", "guest_sip_authorization", "require_authorization")
        return {key: full[key] for key in (*keys, "persistent", "creation_time", "expire_time")}

    # --- reads

    async def get(self, meeting_uuid: UUID, tenants: set[UUID] | None = None) -> MeetingRecord:
        query = select(Meeting).where(Meeting.uuid == meeting_uuid)
        if tenants is not None:
            query = query.where(Meeting.tenant_uuid.in_(tenants))
        found = await self._fetch(query)
        if not found:
            raise NotFound("meetings", uuid=str(meeting_uuid))
        return found[0]

    async def find(self, meeting_uuid: UUID) -> MeetingRecord | None:
        found = await self._fetch(select(Meeting).where(Meeting.uuid == meeting_uuid))
        return found[0] if found else None

    async def find_by_guest_username(self, username: str) -> MeetingRecord | None:
        found = await self._fetch(select(Meeting).where(Meeting.guest_sip_username == username))
        return found[0] if found else None

    async def find_by_exten(self, exten: str) -> MeetingRecord | None:
        found = await self._fetch(select(Meeting).where(Meeting.exten == exten))
        return found[0] if found else None

    async def all_expiring(self) -> list[MeetingRecord]:
        return await self._fetch(select(Meeting).where(Meeting.persistent.is_(False)))

    async def search(
        self, tenants: set[UUID], params: ListParams, owner: UUID | None = None
    ) -> tuple[int, list[MeetingRecord]]:
        """Meetings of these tenants, or those `owner` owns (owners belong to the meeting's tenant)."""
        if owner is not None:
            # Owners are users of the meeting's tenant: no tenant filter, which would lead SQLite's planner to
            # scan the whole tenant's meetings instead of the owner's few.
            query = (
                select(Meeting)
                .join(MeetingOwner, MeetingOwner.meeting_uuid == Meeting.uuid)
                .where(MeetingOwner.user_uuid == owner)
            )
        else:
            query = select(Meeting).where(Meeting.tenant_uuid.in_(tenants))
        if params.search:
            pattern = f"%{params.search.lower()}%"
            query = query.where(or_(func.lower(Meeting.name).like(pattern), Meeting.exten.like(pattern)))
        column = getattr(Meeting, params.order or "creation_time")
        ordered = query.order_by(column.desc() if params.direction == "desc" else column.asc(), Meeting.uuid)
        ordered = ordered.offset(params.offset)
        if params.limit is not None:
            ordered = ordered.limit(params.limit)
        async with self._db.read() as connection:
            total = (await connection.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            items = await self._fetch(ordered, connection)
        return total, items

    async def _fetch(self, query: Select[Any], connection: DbConnection | None = None) -> list[MeetingRecord]:
        if connection is None:
            async with self._db.read() as connection:
                return await self._fetch(query, connection)
        rows = (await connection.execute(query)).all()
        if not rows:
            return []
        uuids = [row.uuid for row in rows]
        owners: dict[UUID, list[UUID]] = {meeting: [] for meeting in uuids}
        owner_rows = await connection.execute(
            select(MeetingOwner.meeting_uuid, MeetingOwner.user_uuid).where(MeetingOwner.meeting_uuid.in_(uuids))
        )
        for owner in owner_rows:
            owners[owner.meeting_uuid].append(owner.user_uuid)
        return [_record(row, tuple(sorted(owners[row.uuid], key=str))) for row in rows]

    # --- writes

    async def _check_owners(self, tenant_uuid: UUID, owners: list[UUID]) -> None:
        if not owners:
            return
        async with self._db.read() as connection:
            found = set(
                (
                    await connection.execute(
                        select(User.uuid).where(User.uuid.in_(owners), User.tenant_uuid == tenant_uuid)
                    )
                ).scalars()
            )
        missing = [str(owner) for owner in owners if owner not in found]
        if missing:
            raise InvalidData({"owner_uuids": f"no such user in this tenant: {', '.join(missing)}"}, "meetings")

    async def create(
        self,
        tenant_uuid: UUID,
        name: str,
        owner_uuids: list[UUID],
        persistent: bool = False,
        require_authorization: bool = False,
        verified_owner: UUID | None = None,
    ) -> MeetingRecord:
        """verified_owner: an owner known to be a user of the tenant (the caller), spared the lookup."""
        if self._ingresses.uri_for(tenant_uuid) is None:
            raise ServiceUnavailable(
                "No HTTP ingress applies to this tenant: create one with POST /api/confd/1.1/ingresses/http "
                "(in this tenant or the master tenant) so guests have a server to reach",
                {"ingress": "missing"},
                "meetings",
            )
        owners = list(dict.fromkeys(owner_uuids))
        await self._check_owners(tenant_uuid, [owner for owner in owners if owner != verified_owner])
        for _attempt in range(8):
            meeting_uuid = uuid.uuid4()
            meeting = MeetingRecord(
                uuid=meeting_uuid,
                tenant_uuid=tenant_uuid,
                name=name,
                owner_uuids=tuple(sorted(owners, key=str)),
                persistent=persistent,
                require_authorization=require_authorization,
                creation_time=utcnow().replace(microsecond=0),
                exten=f"{self._exten_prefix}{secrets.randbelow(1_000_000):06d}",
                guest_sip_username=GUEST_USERNAME.format(uuid=meeting_uuid),
                guest_sip_password=random_secret(20),
            )
            try:
                async with self._db.write() as connection:
                    await connection.execute(
                        insert(Meeting),
                        dict(
                            uuid=meeting.uuid,
                            tenant_uuid=tenant_uuid,
                            name=name,
                            persistent=persistent,
                            require_authorization=require_authorization,
                            creation_time=meeting.creation_time,
                            exten=meeting.exten,
                            guest_sip_username=meeting.guest_sip_username,
                            guest_sip_password=meeting.guest_sip_password,
                        ),
                    )
                    if owners:
                        await connection.execute(
                            insert(MeetingOwner), [{"meeting_uuid": meeting.uuid, "user_uuid": o} for o in owners]
                        )
            except IntegrityError:
                continue  # the random exten was taken: draw another
            self._notifier.created(meeting, self.to_json(meeting, with_credentials=True))
            self._notifier.ready(meeting)
            return meeting
        raise ServiceUnavailable("Could not allocate a free extension for the meeting; try again")

    async def update(self, meeting: MeetingRecord, changes: dict[str, Any]) -> MeetingRecord:
        if meeting.persistent and changes.get("persistent") is False:
            # The expiry delay runs from now: an old meeting made non-persistent is not deleted on the spot.
            changes["expiry_start"] = utcnow().replace(microsecond=0)
        owners = changes.pop("owner_uuids", None)
        if owners is not None:
            owners = list(dict.fromkeys(owners))
            await self._check_owners(meeting.tenant_uuid, owners)
        async with self._db.write() as connection:
            if changes:
                await connection.execute(update(Meeting).where(Meeting.uuid == meeting.uuid).values(**changes))
            if owners is not None:
                await connection.execute(delete(MeetingOwner).where(MeetingOwner.meeting_uuid == meeting.uuid))
                if owners:
                    await connection.execute(
                        insert(MeetingOwner), [{"meeting_uuid": meeting.uuid, "user_uuid": o} for o in owners]
                    )
        if owners is not None:
            changes["owner_uuids"] = tuple(sorted(owners, key=str))
        updated = replace(meeting, **changes)
        if meeting.require_authorization and not updated.require_authorization:
            for listener in self.on_authorization_lifted:
                await listener(updated)
        self._notifier.updated(updated, self.to_json(updated, with_credentials=True))
        return updated

    async def delete(self, meeting: MeetingRecord) -> bool:
        """Delete once: a second caller (API racing expiry) finds nothing and emits nothing."""
        async with self._db.write() as connection:
            result = await connection.execute(delete(Meeting).where(Meeting.uuid == meeting.uuid))
        if not result.rowcount:
            return False
        self._notifier.deleted(meeting, self.to_json(meeting, with_credentials=True))
        return True
