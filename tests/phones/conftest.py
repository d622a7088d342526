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
from tests.phones.meeting import PHONE_TONE


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/meetings.db"


@pytest.fixture
async def baresip(tmp_path: Path) -> AsyncIterator[Baresip]:
    async with Baresip(tmp_path / "baresip", tone_frequency=PHONE_TONE) as phone:
        yield phone


@pytest.fixture
async def linphone(tmp_path: Path) -> AsyncIterator[Linphone]:
    async with Linphone(tmp_path / "linphone", tone_frequency=PHONE_TONE) as phone:
        yield phone
