"""The database handle: SQLite (default) or PostgreSQL, migrated on start.

PostgreSQL goes through asyncpg. SQLite statements run on the event loop's own thread: one takes tens of
microseconds, far less than the two thread hops per statement an async SQLite driver costs (measured in
bench/README.md), and SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: seconds to get a PostgreSQL connection, and for one statement, before the request fails (503)
CONNECT_TIMEOUT = 5.0
STATEMENT_TIMEOUT = 15.0


class DbConnection(Protocol):
    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]: ...


class _LoopConnection:
    """A synchronous SQLite connection behind the same awaitable execute() as an async one."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        return self._connection.execute(statement, parameters)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while one writer commits; NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def plain_url(url: str) -> str:
    """The URL with the driver this server uses: pysqlite for SQLite, asyncpg for PostgreSQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database: {backend} (use sqlite or postgresql)")


class DatabaseUnavailable(Exception):
    """The database server cannot be reached or stopped answering (the API answers 503, not 500)."""


@contextmanager
def _unavailable_as_one_error() -> Iterator[None]:
    """asyncpg's ways of saying the server is gone (an OSError on connect, a timeout, a connection error wrapped by
    SQLAlchemy) as one exception; any other database error stays what it is."""
    try:
        yield
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except DBAPIError as exc:
        original = exc.orig
        lost = isinstance(original, (OSError, TimeoutError)) or "connection" in type(original).__name__.lower()
        if exc.connection_invalidated or lost:
            raise DatabaseUnavailable(f"{type(original).__name__}: {original}") from exc
        raise


class Database:
    def __init__(self, url: str) -> None:
        self.url = plain_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._sync = create_engine(self.url)
            event.listen(self._sync, "connect", _sqlite_pragmas)
        else:
            # Bounded waits: a database that stops answering turns requests into 503s within seconds, not hangs.
            self._async = create_async_engine(
                self.url,
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                pool_timeout=CONNECT_TIMEOUT,
                connect_args={"timeout": CONNECT_TIMEOUT, "command_timeout": STATEMENT_TIMEOUT},
            )
        # SQLite takes one writer at a time: queue writers here rather than retry on "database is locked".
        self._write_lock = asyncio.Lock()

    @property
    def engine(self) -> Engine:
        """The synchronous engine underneath, where statement events are heard (SQLite's own, asyncpg's sync_engine)."""
        if self._sync is not None:
            return self._sync
        assert self._async is not None
        return self._async.sync_engine

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (the latest by default; an older one lets tests migrate real data)."""
        if self._sync is not None:
            with self._sync.begin() as connection:
                _upgrade(connection, revision)
            return
        assert self._async is not None
        async with self._async.begin() as connection:
            await connection.run_sync(_upgrade, revision)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[DbConnection]:
        if self._sync is not None:
            with self._sync.connect() as connection:
                yield _LoopConnection(connection)
            return
        assert self._async is not None
        with _unavailable_as_one_error():
            async with self._async.connect() as async_connection:
                yield async_connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[DbConnection]:
        """A transaction, committed when the block ends without error."""
        if self._sync is not None:
            async with self._write_lock:
                with self._sync.begin() as connection:
                    yield _LoopConnection(connection)
            return
        assert self._async is not None
        with _unavailable_as_one_error():
            async with self._async.begin() as async_connection:
                yield async_connection

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
