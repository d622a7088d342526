"""The database stops: readiness turns false and the API answers 503 at once instead of hanging; it comes back.

A PostgreSQL server of the test's own (initdb in a temporary folder, on a free port), so stopping it touches
nothing else on the machine.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, make_settings

pytestmark = pytest.mark.slow

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        assert PG_BIN is not None
        self.folder = folder
        self.data = folder / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        shutil.chown(folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        assert PG_BIN is not None
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.folder,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", str(self.folder / "log"), "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if PG_BIN is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL's server binaries are not installed")
    # not under pytest's tmp_path: the postgres user cannot enter root's private folders
    folder = Path(tempfile.mkdtemp(prefix="meetings-pg-"))
    try:
        server = PrivatePostgres(folder)
        server.start()
        yield server
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate",
             "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(private_postgres: PrivatePostgres) -> str:
    return private_postgres.url


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(database_url, MEETINGS_HEALTH__DATABASE_TIMEOUT_SECONDS="1")


async def test_readiness_and_503_while_the_database_is_down(api: Api, private_postgres: PrivatePostgres) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    assert (await api.request("GET", "/readyz")).status == 200

    private_postgres.stop()
    started = time.monotonic()
    ready = await api.request("GET", "/readyz")
    assert ready.status == 503
    assert (await ready.json())["details"]["checks"]["database"] is False
    answer = await api.request("POST", "/api/confd/1.1/users/me/meetings", headers={"X-Auth-Token": alice},
                               json={"name": "while down"})  # fmt: skip
    assert answer.status == 503, await answer.text()
    assert (await answer.json())["error_id"] == "service-unavailable"
    listing = await api.request("GET", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}",
                                headers={"X-Auth-Token": alice})  # fmt: skip
    assert listing.status in (200, 503)  # a cached read may still be served; never a 500 or a hang
    elapsed = time.monotonic() - started
    print(f"readiness and the API answered within {elapsed:.2f} s of the database stopping")
    assert elapsed < 15

    private_postgres.start()
    ready = await api.request("GET", "/readyz")
    assert ready.status == 200, await ready.text()
    created = await api.request("POST", "/api/confd/1.1/users/me/meetings", headers={"X-Auth-Token": alice},
                                json={"name": "after"})  # fmt: skip
    assert created.status == 201
