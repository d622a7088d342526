"""Schema migrations on real data (SQLite and PostgreSQL): what a server of the previous release left is kept."""

from __future__ import annotations

import datetime
import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.db.engine import Database, plain_url
from gateway.db.models import Base, Meeting, MeetingOwner, Tenant, User

CREATED = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def _differences(url: str) -> list[object]:
    """What the migrated schema lacks or has beyond the models (autogenerate's view): nothing, when they agree."""
    url = plain_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return _schema_differences(connection)
        finally:
            engine.dispose()
    async_engine = create_async_engine(url)
    try:
        async with async_engine.connect() as connection:
            return await connection.run_sync(_schema_differences)
    finally:
        await async_engine.dispose()


async def test_expiry_start_migration_keeps_meetings_and_owners(database_url: str) -> None:
    tenant, user, meeting = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    db = Database(database_url)
    try:
        await db.migrate("0001")
        # Columns named one by one: the models' later columns do not exist yet at revision 0001.
        async with db.write() as connection:
            await connection.execute(insert(Tenant).values(uuid=tenant, name="master", created_at=CREATED))
            await connection.execute(
                insert(User).values(
                    uuid=user, tenant_uuid=tenant, username="alice", password_hash="x", admin=False,
                    sip_username="sip-alice", sip_password="secret", created_at=CREATED,
                )
            )  # fmt: skip
            await connection.execute(
                insert(Meeting).values(
                    uuid=meeting, tenant_uuid=tenant, name="Old", persistent=True, require_authorization=False,
                    creation_time=CREATED, exten="*41000001", guest_sip_username="guest-old", guest_sip_password="pw",
                )
            )  # fmt: skip
            await connection.execute(insert(MeetingOwner).values(meeting_uuid=meeting, user_uuid=user))
        await db.migrate()
        async with db.read() as connection:
            row = (await connection.execute(select(Meeting).where(Meeting.uuid == meeting))).one()
            owners = (await connection.execute(select(MeetingOwner.user_uuid))).scalars().all()
        assert row.name == "Old" and row.persistent is True
        assert row.expiry_start is None  # the delay of a meeting never made non-persistent runs from creation
        assert owners == [user]
    finally:
        await db.close()
    assert await _differences(database_url) == []
