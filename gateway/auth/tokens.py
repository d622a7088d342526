"""Tokens: 256 random bits, stored hashed, cached in memory so checking one costs no query."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import delete, insert, select

from gateway.auth.acl import ADMIN_ACL, USER_ACL, grants
from gateway.db.engine import Database
from gateway.db.models import Token, User, utcnow


@dataclass(frozen=True)
class Caller:
    """Whoever a valid token belongs to."""

    token: str
    user_uuid: UUID
    tenant_uuid: UUID
    admin: bool
    issued_at: datetime.datetime
    expires_at: datetime.datetime
    session_uuid: UUID
    username: str
    acl: tuple[str, ...] = field(default=())

    def may(self, required: str) -> bool:
        return grants(self.acl, required, str(self.user_uuid))

    @property
    def expired(self) -> bool:
        return self.expires_at <= utcnow()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Caller] = {}

    async def issue(
        self, user: User, expiration: int, remote_addr: str | None = None, user_agent: str | None = None
    ) -> Caller:
        token = secrets.token_urlsafe(32)
        issued_at = utcnow().replace(microsecond=0)
        session_uuid = uuid.uuid4()
        expires_at = issued_at + datetime.timedelta(seconds=expiration)
        async with self._db.write() as connection:
            await connection.execute(
                insert(Token),
                dict(
                    token_hash=token_hash(token),
                    user_uuid=user.uuid,
                    session_uuid=session_uuid,
                    issued_at=issued_at,
                    expires_at=expires_at,
                    remote_addr=remote_addr,
                    user_agent=(user_agent or "")[:256] or None,
                ),
            )
        caller = self._caller(token, user, issued_at, expires_at, session_uuid)
        self._cache[token_hash(token)] = caller
        return caller

    @staticmethod
    def _caller(
        token: str, user: User, issued_at: datetime.datetime, expires_at: datetime.datetime, session: UUID
    ) -> Caller:
        return Caller(
            token=token,
            user_uuid=user.uuid,
            tenant_uuid=user.tenant_uuid,
            admin=user.admin,
            issued_at=issued_at,
            expires_at=expires_at,
            session_uuid=session,
            username=user.username,
            acl=ADMIN_ACL if user.admin else USER_ACL,
        )

    async def check(self, token: str) -> Caller | None:
        """The caller behind a token, or None when it is unknown, revoked or expired."""
        if not token or len(token) > 256:
            return None
        key = token_hash(token)
        caller = self._cache.get(key)
        if caller is None:
            async with self._db.read() as connection:
                row = (
                    await connection.execute(
                        select(
                            Token.issued_at,
                            Token.expires_at,
                            Token.session_uuid,
                            User.uuid,
                            User.tenant_uuid,
                            User.admin,
                            User.username,
                        )
                        .join(User, User.uuid == Token.user_uuid)
                        .where(Token.token_hash == key)
                    )
                ).first()
            if row is None:
                return None
            user = User(uuid=row.uuid, tenant_uuid=row.tenant_uuid, admin=row.admin, username=row.username)
            caller = self._caller(token, user, _aware(row.issued_at), _aware(row.expires_at), row.session_uuid)
            self._cache[key] = caller
        if caller.expired:
            await self.revoke(token)
            return None
        return caller

    async def revoke(self, token: str) -> bool:
        key = token_hash(token)
        self._cache.pop(key, None)
        async with self._db.write() as connection:
            result = await connection.execute(delete(Token).where(Token.token_hash == key))
        return bool(result.rowcount)

    async def forget_user(self, user_uuid: UUID, revoke: bool = False) -> None:
        """Drop cached callers of a user whose rights changed; revoke his tokens when he is deleted."""
        for key in [key for key, caller in self._cache.items() if caller.user_uuid == user_uuid]:
            del self._cache[key]
        if revoke:
            async with self._db.write() as connection:
                await connection.execute(delete(Token).where(Token.user_uuid == user_uuid))

    async def purge_expired(self) -> None:
        now = utcnow()
        for key in [key for key, caller in self._cache.items() if caller.expires_at <= now]:
            del self._cache[key]
        async with self._db.write() as connection:
            await connection.execute(delete(Token).where(Token.expires_at <= now))


def _aware(moment: datetime.datetime) -> datetime.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
