"""Health: Wazo's per-service `GET .../status`, and liveness and readiness for a load balancer or Kubernetes.

- `/livez`: the process answers (its loop runs). A load balancer or Kubernetes restarts what fails it.
- `/readyz`: it should get new work: 503 while draining, while the database does not answer within the probe's
  time, or when the event loop was stalled lately (calls and media in progress suffer first; send the next ones
  elsewhere).
- `GET /api/auth/0.1/status`, `/api/confd/1.1/status`, `/api/calld/1.0/status`: as Wazo's services answer them,
  `{"<component>": {"status": "ok" | "fail"}}`, behind the ACL `<service>.status.read`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy import text

from gateway.auth.context import authenticate
from gateway.db.engine import Database
from gateway.http.errors import ServiceUnavailable, error_response, json_response
from gateway.metrics import Metrics

#: how often the loop monitor wakes (its lateness is the loop's lag)
LOOP_TICK = 0.25


class LoopMonitor:
    """Measures how late the event loop wakes a timer; keeps the recent worst for readiness."""

    def __init__(self, metrics: Metrics | None = None, window: float = 10.0) -> None:
        self._metrics = metrics
        self._window = window
        self._recent: deque[tuple[float, float]] = deque()  # (when, lag)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LOOP_TICK
            await asyncio.sleep(LOOP_TICK)
            lag = max(0.0, loop.time() - due)
            self.record(lag)

    def record(self, lag: float) -> None:
        now = time.monotonic()
        self._recent.append((now, lag))
        while self._recent and self._recent[0][0] < now - self._window:
            self._recent.popleft()
        if self._metrics is not None:
            self._metrics.loop_lag.observe(lag)

    def worst_recent(self, seconds: float | None = None) -> float:
        """The largest lag seen in the window (or its last `seconds`); a loop blocked right now shows when it
        wakes (readiness runs then)."""
        since = time.monotonic() - seconds if seconds is not None else -1.0
        return max((lag for when, lag in self._recent if when >= since), default=0.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Health:
    """What readiness and the status endpoints look at."""

    db: Database
    loop: LoopMonitor
    database_timeout: float = 2.0
    loop_stall_seconds: float = 1.0
    draining: bool = False
    #: extra components of calld's status (name -> is it ok), filled by the wiring (SIP listeners, bridge)
    calld_components: dict[str, Callable[[], bool]] = field(default_factory=dict)

    async def database_ok(self) -> bool:
        try:
            await asyncio.wait_for(self._probe(), self.database_timeout)
        except Exception:
            return False
        return True

    async def _probe(self) -> None:
        async with self.db.read() as connection:
            await connection.execute(text("SELECT 1"))

    def loop_ok(self) -> bool:
        return self.loop.worst_recent() < self.loop_stall_seconds

    async def readiness(self) -> dict[str, bool]:
        return {"database": await self.database_ok(), "event_loop": self.loop_ok(), "accepting": not self.draining}


def _component(ok: bool) -> dict[str, str]:
    return {"status": "ok" if ok else "fail"}


def routes(health: Health) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/livez")
    async def live(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    @table.get("/readyz")
    async def ready(_request: web.Request) -> web.Response:
        checks = await health.readiness()
        if all(checks.values()):
            return json_response({"status": "ok", "checks": checks})
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return error_response(ServiceUnavailable(f"Not ready: {failing}", {"checks": checks}))

    Components = Callable[[], Awaitable[dict[str, bool]]]

    def status(acl: str, components: Components) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            await authenticate(request, acl)
            return json_response({name: _component(ok) for name, ok in (await components()).items()})

        return handle

    async def auth_components() -> dict[str, bool]:
        return {"rest_api": True, "database": await health.database_ok()}

    async def calld_components() -> dict[str, bool]:
        found = {"rest_api": True, "accepting_calls": not health.draining}
        found.update({name: check() for name, check in health.calld_components.items()})
        return found

    table.get("/api/auth/0.1/status")(status("auth.status.read", auth_components))
    table.get("/api/confd/1.1/status")(status("confd.status.read", auth_components))
    table.get("/api/calld/1.0/status")(status("calld.status.read", calld_components))
    return table
