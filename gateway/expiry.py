"""Meetings expire at the exact second they are due: one timer per non-persistent meeting, not a daily sweep.

The scheduler follows the event bus (created, updated, deleted), so every path that changes a meeting keeps
the clock right without calling it. It takes each meeting's `expire_time` as the meeting service computes it
(from creation, or from the moment a persistent meeting was made non-persistent). Meetings that fell due while
the server was down go at start-up.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Awaitable, Callable
from uuid import UUID

from gateway.db.models import utcnow
from gateway.events import Event, EventBus

logger = logging.getLogger(__name__)

Expire = Callable[[UUID], Awaitable[None]]


class ExpiryScheduler:
    def __init__(self, bus: EventBus, expire: Expire) -> None:
        self._expire = expire
        self._timers: dict[UUID, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe = [
            bus.subscribe(self._on_change, "meeting_created"),
            bus.subscribe(self._on_change, "meeting_updated"),
            bus.subscribe(self._on_deleted, "meeting_deleted"),
        ]

    def __len__(self) -> int:
        return len(self._timers)

    def schedule(self, meeting_uuid: UUID, expire_time: datetime.datetime | None) -> None:
        """Expire the meeting at expire_time (at once if past); None (persistent) cancels its timer."""
        self.cancel(meeting_uuid)
        if expire_time is None:
            return
        delay = max(0.0, (expire_time - utcnow()).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers[meeting_uuid] = loop.call_later(delay, self._fire, meeting_uuid)

    def cancel(self, meeting_uuid: UUID) -> None:
        timer = self._timers.pop(meeting_uuid, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, meeting_uuid: UUID) -> None:
        self._timers.pop(meeting_uuid, None)
        task = asyncio.get_running_loop().create_task(self._run(meeting_uuid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, meeting_uuid: UUID) -> None:
        try:
            logger.info("meeting %s expired", meeting_uuid)
            await self._expire(meeting_uuid)
        except Exception:
            logger.exception("could not expire meeting %s", meeting_uuid)

    def _on_change(self, event: Event) -> None:
        raw = event.data["expire_time"]
        self.schedule(uuid.UUID(event.data["uuid"]), datetime.datetime.fromisoformat(raw) if raw else None)

    def _on_deleted(self, event: Event) -> None:
        self.cancel(uuid.UUID(event.data["uuid"]))

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
