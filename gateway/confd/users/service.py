"""Users: each with a login for the APIs and a SIP line of his own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.auth.passwords import PasswordHashing, random_secret, random_username
from gateway.auth.tokens import TokenService
from gateway.db.engine import Database, DbConnection
from gateway.db.models import Tenant, User, utcnow
from gateway.http.errors import BadRequest, InvalidData, NotFound
from gateway.http.lists import ListParams

ORDERABLE = ("username", "firstname", "lastname", "created_at")


@dataclass(frozen=True)
class UserRecord:
    uuid: UUID
    tenant_uuid: UUID
    username: str
    firstname: str | None
    lastname: str | None
    admin: bool
    sip_username: str
    sip_password: str

    @classmethod
    def from_row(cls, row: Any) -> UserRecord:
        return cls(
            row.uuid, row.tenant_uuid, row.username, row.firstname, row.lastname, row.admin,
            row.sip_username, row.sip_password,
        )  # fmt: skip

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.firstname, self.lastname) if part) or self.username


class UserService:
    def __init__(self, db: Database, tokens: TokenService, hashing: PasswordHashing) -> None:
        self._db = db
        self._tokens = tokens
        self._hashing = hashing

    async def create(
        self,
        tenant_uuid: UUID,
        username: str,
        password: str,
        firstname: str | None = None,
        lastname: str | None = None,
        admin: bool = False,
    ) -> UserRecord:
        record = UserRecord(
            uuid.uuid4(), tenant_uuid, username, firstname, lastname, admin, random_username(), random_secret(24)
        )
        password_hash = await self._hashing.hash(password)
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    insert(User),
                    dict(
                        uuid=record.uuid,
                        tenant_uuid=tenant_uuid,
                        username=username,
                        password_hash=password_hash,
                        firstname=firstname,
                        lastname=lastname,
                        admin=admin,
                        sip_username=record.sip_username,
                        sip_password=record.sip_password,
                        created_at=utcnow(),
                    ),
                )
        except IntegrityError:
            raise InvalidData({"username": f"{username} is already taken"}, "users") from None
        return record

    async def get(self, user_uuid: UUID, tenants: set[UUID] | None = None) -> UserRecord:
        query = select(User).where(User.uuid == user_uuid)
        if tenants is not None:
            query = query.where(User.tenant_uuid.in_(tenants))
        async with self._db.read() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            raise NotFound("users", uuid=str(user_uuid))
        return UserRecord.from_row(row)

    async def find_by_username(self, username: str) -> User | None:
        async with self._db.read() as connection:
            row = (await connection.execute(select(User).where(User.username == username))).first()
        return None if row is None else User(**row._asdict())

    async def find_by_sip_username(self, sip_username: str) -> UserRecord | None:
        async with self._db.read() as connection:
            row = (await connection.execute(select(User).where(User.sip_username == sip_username))).first()
        return None if row is None else UserRecord.from_row(row)

    async def login(self, username: str, password: str, suspect: bool = False) -> User | None:
        """The user if the password is right; None, at the same cost, for a wrong password or unknown user.
        A `suspect` attempt's password check waits behind the others (see PasswordHashing)."""
        user = await self.find_by_username(username)
        ok = await self._hashing.verify(user.password_hash if user else None, password, suspect)
        return user if ok and user else None

    async def search(self, tenants: set[UUID], params: ListParams) -> tuple[int, list[UserRecord]]:
        query = select(User).where(User.tenant_uuid.in_(tenants))
        if params.search:
            pattern = f"%{params.search.lower()}%"
            query = query.where(
                or_(
                    func.lower(User.username).like(pattern),
                    func.lower(User.firstname).like(pattern),
                    func.lower(User.lastname).like(pattern),
                )
            )
        async with self._db.read() as connection:
            total = (await connection.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            column = getattr(User, params.order or "username")
            query = query.order_by(column.desc() if params.direction == "desc" else column.asc(), User.uuid)
            query = query.offset(params.offset)
            if params.limit is not None:
                query = query.limit(params.limit)
            rows = (await connection.execute(query)).all()
        return total, [UserRecord.from_row(row) for row in rows]

    async def update(self, user: UserRecord, changes: dict[str, Any]) -> UserRecord:
        values = {key: value for key, value in changes.items() if key != "password"}
        if changes.get("password") is not None:
            values["password_hash"] = await self._hashing.hash(changes["password"])
        if values:
            try:
                async with self._db.write() as connection:
                    if values.get("admin") is False:
                        await _keep_an_administrator(connection, user.uuid, "demote")
                    await connection.execute(update(User).where(User.uuid == user.uuid).values(**values))
            except IntegrityError:
                raise InvalidData({"username": f"{changes.get('username')} is already taken"}, "users") from None
        await self._tokens.forget_user(user.uuid)
        return await self.get(user.uuid)

    async def delete(self, user: UserRecord) -> None:
        async with self._db.write() as connection:
            await _keep_an_administrator(connection, user.uuid, "delete")
            await connection.execute(delete(User).where(User.uuid == user.uuid))
        await self._tokens.forget_user(user.uuid, revoke=True)


class LastAdministrator(BadRequest):
    """Removing the master tenant's only administrator would leave nobody able to administer the server."""

    error_id = "last-administrator"


async def _keep_an_administrator(connection: DbConnection, user_uuid: UUID, action: str) -> None:
    """Refuse to delete or demote the master tenant's last administrator, inside the writing transaction.

    The user's tenant row is locked (FOR UPDATE on PostgreSQL; SQLite has one writer at a time anyway), so two
    concurrent removals of the last two administrators are serialised and the second one sees the first.
    """
    row = (
        await connection.execute(
            select(User.username, User.admin, User.tenant_uuid, Tenant.parent_uuid)
            .join(Tenant, Tenant.uuid == User.tenant_uuid)
            .where(User.uuid == user_uuid)
            .with_for_update(of=Tenant)
        )
    ).first()
    if row is None or not row.admin or row.parent_uuid is not None:
        return
    others = (
        await connection.execute(
            select(func.count())
            .select_from(User)
            .where(User.tenant_uuid == row.tenant_uuid, User.admin.is_(True), User.uuid != user_uuid)
        )
    ).scalar_one()
    if others == 0:
        reason = (
            f"{row.username} is the last administrator of the master tenant: make another user of the master "
            "tenant an administrator first"
        )
        raise LastAdministrator(
            f"Cannot {action} {row.username}: {reason}",
            {"admin": {"message": reason, "constraint_id": "last-administrator"}},
            "users",
        )
