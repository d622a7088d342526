"""The two confbridge profiles, server-wide, read by the room layer on each join."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from gateway.confd.confbridge.schema import DEFAULTS, VIDEO_MODES
from gateway.db.engine import Database
from gateway.db.models import ConfbridgeProfile


@dataclass(frozen=True)
class BridgePolicy:
    """What the SFU honours of the options: video or not, how many slots, how many members."""

    video_mode: str
    max_members: int | None


class ConfbridgeService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._profiles: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULTS)

    async def load(self) -> None:
        async with self._db.read() as connection:
            for row in await connection.execute(select(ConfbridgeProfile)):
                self._profiles[row.name] = dict(row.options)

    def get(self, profile: str) -> dict[str, Any]:
        return copy.deepcopy(self._profiles[profile])

    async def replace(self, profile: str, options: dict[str, Any]) -> None:
        async with self._db.write() as connection:
            await connection.execute(delete(ConfbridgeProfile).where(ConfbridgeProfile.name == profile))
            await connection.execute(insert(ConfbridgeProfile), dict(name=profile, options=options))
        self._profiles[profile] = copy.deepcopy(options)

    def policy(self) -> BridgePolicy:
        bridge = self._profiles["wazo_default_bridge"]
        video_mode = str(bridge.get("video_mode", "sfu"))
        raw_max = str(bridge.get("max_members", ""))
        max_members = int(raw_max) if raw_max.isdigit() and int(raw_max) > 0 else None
        return BridgePolicy(video_mode if video_mode in VIDEO_MODES else "sfu", max_members)
