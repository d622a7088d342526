"""Prometheus metrics (prometheus-client): what an operator graphs and alerts on.

Each application has its own `CollectorRegistry` (tests run several in one process). Counters and histograms are
updated where things happen (an API request, a query, an expiry); what is live state (rooms, participants, the
media and SIP counters the stack and the SFU keep) is read at scrape time by collectors, so the hot paths pay
nothing for metrics. `/metrics` is served on the API's port only behind a bearer token, and/or on a listener of its
own (`metrics.port`, loopback by default), as config.yaml says; with neither it is not served.
"""

from __future__ import annotations

import hmac
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine

from sfu.quality import KINDS, MediaCounters

#: the latency buckets of request-like things (seconds): a few ms to several seconds
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: database statements: SQLite's take tens of microseconds
QUERY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0)
#: the event loop's lateness in waking up
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """The application's registry and the instruments the gateway updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)
        self.api_latency = Histogram(
            "meetings_api_request_duration_seconds",
            "HTTP API requests, by method, route template and status class",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.db_query_latency = Histogram(
            "meetings_db_query_duration_seconds",
            "Database statements, from sending to the result",
            buckets=QUERY_BUCKETS,
            registry=registry,
        )
        self.loop_lag = Histogram(
            "meetings_event_loop_lag_seconds",
            "How late the event loop woke a timer (a busy or blocked loop delays calls and media)",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.joins = Counter(
            "meetings_joins_total",
            "INVITEs to meetings by outcome: joined, full, draining, bad_offer, refused_<SIP status>, ...",
            ["outcome"],
            registry=registry,
        )
        self.invite_answer_latency = Histogram(
            "meetings_invite_answer_seconds",
            "From an INVITE to a meeting to its 200 OK (the room's SDP answer included)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.expiries = Counter("meetings_expiries_total", "Meetings deleted because they expired", registry=registry)
        self.draining = Gauge(
            "meetings_draining", "1 while the server drains before stopping, else 0", registry=registry
        )

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Live state read at scrape time: `collect` yields complete metric families."""
        self.registry.register(_CallbackCollector(collect))

    def time_queries(self, engine: Engine) -> None:
        """Time every statement `engine` runs (for an async engine, pass its `sync_engine`)."""

        def before(_conn: Any, _cursor: Any, _statement: Any, _params: Any, context: Any, _many: bool) -> None:
            context._meetings_started = time.perf_counter()

        def after(_conn: Any, _cursor: Any, _statement: Any, _params: Any, context: Any, _many: bool) -> None:
            started = getattr(context, "_meetings_started", None)
            if started is not None:
                self.db_query_latency.observe(time.perf_counter() - started)

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _CallbackCollector(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()

    def describe(self) -> Iterable[Metric]:
        # no fixed description: the families are known only once collected
        return ()


def media_collector(counters: Callable[[], MediaCounters]) -> Callable[[], Iterable[Metric]]:
    """The SFU's media counters (`counters()`: the process's totals since it started), read at scrape time."""

    def collect() -> Iterable[Metric]:
        totals = counters()
        packets = CounterMetricFamily(
            "meetings_media_packets", "RTP packets received (in) and sent (out), by kind", labels=["kind", "direction"]
        )
        octets = CounterMetricFamily(
            "meetings_media_bytes",
            "RTP payload bytes received (in) and sent (out), by kind",
            labels=["kind", "direction"],
        )
        lost = CounterMetricFamily(
            "meetings_media_packets_lost",
            "RTP packets lost: on the way to the server (in, its count) and to participants (out, their reports)",
            labels=["kind", "direction"],
        )
        for kind in KINDS:
            for direction in ("in", "out"):
                packets.add_metric([kind, direction], totals.get(kind, "packets", direction))
                octets.add_metric([kind, direction], totals.get(kind, "bytes", direction))
                lost.add_metric([kind, direction], totals.get(kind, "lost", direction))
        yield packets
        yield octets
        yield lost
        nacks = CounterMetricFamily(
            "meetings_media_nacks", "NACKs received from subscribers and sent to publishers", labels=["direction"]
        )
        nacks.add_metric(["received"], totals.nacks_received)
        nacks.add_metric(["sent"], totals.nacks_sent)
        yield nacks
        yield CounterMetricFamily(
            "meetings_media_retransmissions", "Video packets sent again to answer NACKs", value=totals.retransmissions
        )
        keyframes = CounterMetricFamily(
            "meetings_media_keyframe_requests",
            "Keyframe requests (PLI, FIR, SIP INFO) received from subscribers and sent to publishers (rate-limited)",
            labels=["direction"],
        )
        keyframes.add_metric(["received"], totals.keyframe_requests_received)
        keyframes.add_metric(["sent"], totals.keyframe_requests_sent)
        yield keyframes
        yield CounterMetricFamily(
            "meetings_media_forwarding_seconds",
            "Event-loop time spent taking in and forwarding video packets (the loop thread's CPU)",
            value=totals.forwarding_seconds,
        )
        yield CounterMetricFamily(
            "meetings_media_mixing_seconds",
            "Event-loop time spent mixing audio (the loop thread's CPU)",
            value=totals.mixing_seconds,
        )

    return collect


def api_latency_middleware(metrics: Metrics) -> Callable[..., Any]:
    """Observe every API request's duration under its route template (never the raw path: UUIDs are unbounded)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if not request.path.startswith("/api/") or request.path.startswith("/api/asterisk/ws"):
            response: web.StreamResponse = await handler(request)
            return response
        started = time.perf_counter()
        status = 500
        try:
            answered: web.StreamResponse = await handler(request)
            status = answered.status
            return answered
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            metrics.api_latency.labels(request.method, route, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )

    return middleware


def metrics_handler(metrics: Metrics, token: str | None) -> Callable[[web.Request], Any]:
    """`GET /metrics`; with a token, only for `Authorization: Bearer <token>` (else 404, as if not there)."""

    async def handle(request: web.Request) -> web.Response:
        if token is not None:
            offered = request.headers.get("Authorization", "")
            if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
                raise web.HTTPNotFound()
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


async def start_listener(metrics: Metrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    """The metrics on a listener of their own (no token there: keep it off public addresses). Returns its port."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics, None))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock).start()
    return runner, int(sock.getsockname()[1])
