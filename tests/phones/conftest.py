"""Real softphones from Debian against the whole server (SQLite): each phone in its own temporary folder with
its own free ports, ended by its PID when the test ends, whatever happened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import room  # noqa: F401  (the browser-alike room fixture)
from tests.phones.baresip import Baresip
from tests.phones.linphone import Linphone


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/meetings.db"


@pytest.fixture
async def baresip(tmp_path: Path) -> AsyncIterator[Baresip]:
    folder = tmp_path / "baresip"
    folder.mkdir()
    phone = Baresip(folder, tone_frequency=600)
    try:
        yield phone
    finally:
        await phone.stop()


@pytest.fixture
async def linphone(tmp_path: Path) -> AsyncIterator[Linphone]:
    folder = tmp_path / "linphone"
    folder.mkdir()
    phone = Linphone(folder, tone_frequency=600)
    try:
        yield phone
    finally:
        await phone.stop()
