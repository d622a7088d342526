"""The operators' live view: the last minutes of load and the rooms as they are now, for the users' app.

Sampled every few seconds from the same numbers `/metrics` exposes (the application's Prometheus registry, the
event-loop monitor, the conferences), kept for ten minutes in memory, so the page draws its charts at once instead
of starting empty. Master tenant administrators only: it shows every tenant's meetings and the process itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from aiohttp import web

from gateway.auth.context import authenticate, require_master_admin
from gateway.calld.conferences import Conferences
from gateway.health import LoopMonitor
from gateway.http.errors import json_response
from gateway.metrics import Metrics

SAMPLE_SECONDS = 5.0
KEEP_SAMPLES = 120  # ten minutes


@dataclass(frozen=True)
class Sample:
    time: float
    cpu_percent: float  # of one core, over the sample's interval
    memory_bytes: float
    loop_lag_seconds: float  # the worst over the interval
    rooms: int
    participants: int
    joins: float  # INVITEs answered since the start


class LiveView:
    def __init__(
        self,
        metrics: Metrics,
        conferences: Conferences,
        loop: LoopMonitor,
        meeting_name: Callable[[UUID], str | None],
        interval: float = SAMPLE_SECONDS,
    ) -> None:
        self._metrics = metrics
        self._meeting_name = meeting_name
        self._conferences = conferences
        self._loop = loop
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=KEEP_SAMPLES)
        self._task: asyncio.Task[None] | None = None
        self._last_cpu: tuple[float, float] | None = None  # (monotonic time, cpu seconds)

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def _value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self._metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def sample(self) -> Sample:
        now = time.monotonic()
        cpu = self._value("process_cpu_seconds_total")
        percent = 0.0
        if self._last_cpu is not None and now > self._last_cpu[0]:
            percent = 100.0 * (cpu - self._last_cpu[1]) / (now - self._last_cpu[0])
        self._last_cpu = (now, cpu)
        rooms, kinds = self._conferences.census()
        sample = Sample(
            time=time.time(),
            cpu_percent=round(percent, 1),
            memory_bytes=self._value("process_resident_memory_bytes"),
            loop_lag_seconds=round(self._loop.worst_recent(self.interval), 4),
            rooms=rooms,
            participants=sum(kinds.values()),
            joins=self._value("meetings_joins_total", {"outcome": "joined"}),
        )
        self.samples.append(sample)
        return sample

    def snapshot(self) -> dict[str, Any]:
        rooms = []
        for meeting_uuid, participants in sorted(self._conferences.rooms().items(), key=lambda item: str(item[0])):
            people = [
                {**participant.to_json_with_quality(), "kind": participant.kind, "talking": participant.talking,
                 "muted": participant.muted}
                for participant in participants
            ]  # fmt: skip
            name = self._meeting_name(meeting_uuid)
            rooms.append({"meeting_uuid": str(meeting_uuid), "name": name, "participants": people})
        return {"interval": self.interval, "history": [asdict(sample) for sample in self.samples], "rooms": rooms}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def routes(view: LiveView) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/api/calld/1.0/live")
    async def live(request: web.Request) -> web.Response:
        caller = await authenticate(request, "calld.live.read")
        require_master_admin(request, caller)
        return json_response(view.snapshot())

    return table
