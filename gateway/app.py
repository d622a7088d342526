"""The composition root: services, HTTP routes, start-up and shutdown in one aiohttp application."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from uuid import UUID

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from gateway import webapps, websocketd
from gateway.auth import resource as auth_resource
from gateway.auth.context import TENANTS, TOKENS
from gateway.auth.passwords import PasswordHashing
from gateway.auth.tenants import TenantService
from gateway.auth.throttle import LoginThrottle, SipLoginThrottle
from gateway.auth.tokens import TokenService
from gateway.bootstrap import bootstrap, default_ingress, has_admin, is_loopback_uri
from gateway.broker import BrokerLink
from gateway.calld import resource as calld_resource
from gateway.calld.conferences import Conferences
from gateway.calls.accounts import AccountDirectory
from gateway.calls.bridge import AsteriskBridge
from gateway.calls.control import CallControl
from gateway.calls.dialplan import DialPlan
from gateway.calls.media import media_settings
from gateway.calls.trunk import TrunkPeers
from gateway.confd.authorizations import resource as authorizations_resource
from gateway.confd.authorizations.notifier import AuthorizationNotifier
from gateway.confd.authorizations.service import AuthorizationService
from gateway.confd.confbridge import resource as confbridge_resource
from gateway.confd.confbridge.service import ConfbridgeService
from gateway.confd.ingresses import resource as ingresses_resource
from gateway.confd.ingresses.service import IngressService
from gateway.confd.meetings import resource as meetings_resource
from gateway.confd.meetings.notifier import MeetingNotifier
from gateway.confd.meetings.service import MeetingService
from gateway.confd.users import resource as users_resource
from gateway.confd.users.service import UserService
from gateway.config import Settings
from gateway.db.engine import Database
from gateway.events import Event, EventBus
from gateway.expiry import ExpiryScheduler
from gateway.health import Health, LoopMonitor
from gateway.health import routes as health_routes
from gateway.http.cors import cors_middleware
from gateway.http.errors import error_middleware
from gateway.http.protocol_log import log_parse_errors_as_one_line
from gateway.http.redaction import redact_access_log
from gateway.live import LiveView
from gateway.live import routes as live_routes
from gateway.logs import make_records_printable
from gateway.media.interface import MediaRooms
from gateway.media.local import LocalMedia
from gateway.media.processes import WorkerProcesses
from gateway.media.remote import RemoteMedia
from gateway.metrics import Metrics, api_latency_middleware, media_collector, metrics_handler, start_listener
from gateway.openapi import resource as openapi_resource
from gateway.services import SERVICES, Services
from gateway.tls import asterisk_client_context, sip_context
from sfu.server import SFU
from signaling.connlimits import ConnectionLimits
from signaling.stack import SipStack, StackConfig

logger = logging.getLogger(__name__)

EXPIRY = web.AppKey("expiry", ExpiryScheduler)
HEALTH = web.AppKey("health", Health)
METRICS_PORT = web.AppKey("metrics_port", int)
SIP_STACK = web.AppKey("sip_stack", SipStack)
CALL_CONTROL = web.AppKey("call_control", CallControl)
ASTERISK_BRIDGE = web.AppKey("asterisk_bridge", AsteriskBridge)
BROKER = web.AppKey("broker", BrokerLink)
MEDIA_WORKERS = web.AppKey("media_workers", WorkerProcesses)
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"


def build_services(settings: Settings) -> Services:
    db = Database(settings.database.url)
    metrics = Metrics()
    metrics.time_queries(db.engine)
    bus = EventBus()
    tokens = TokenService(db)
    tenants = TenantService(db)
    ingresses = IngressService(db)
    meetings = MeetingService(
        db, ingresses, MeetingNotifier(bus), settings.meetings.exten_prefix, settings.meetings.expiry_seconds
    )
    authorizations = AuthorizationService(db, AuthorizationNotifier(bus))
    meetings.on_authorization_lifted.append(authorizations.accept_pending)
    hashing = PasswordHashing(settings.auth.password_hash_threads, settings.auth.password_hash_queue)
    return Services(
        settings=settings,
        db=db,
        bus=bus,
        tenants=tenants,
        tokens=tokens,
        users=UserService(db, tokens, hashing),
        ingresses=ingresses,
        meetings=meetings,
        authorizations=authorizations,
        confbridge=ConfbridgeService(db),
        conferences=Conferences(bus),
        metrics=metrics,
        hashing=hashing,
        login_throttle=LoginThrottle(settings.auth),
    )


async def start_services(services: Services) -> None:
    await services.db.migrate()
    await services.tenants.load()
    master = services.tenants.master
    await services.ingresses.load(master.uuid if master else None)
    if master is not None:
        await services.ingresses.follow_configuration(master.uuid, default_ingress(services.settings))
    await services.confbridge.load()


def _tell_link_base(services: Services) -> None:
    """Say where guest links lead (the master tenant's ingress), and warn when nobody else could reach it."""
    master = services.tenants.master
    uri = services.ingresses.uri_for(master.uuid) if master else None
    if uri is None:
        print("Guest links: no HTTP ingress applies; creating meetings answers 503 until one is set", flush=True)
        return
    print(f"Guest links start with {uri}", flush=True)
    if is_loopback_uri(uri):
        print(
            f"  warning: {uri} is a loopback address, reachable from this machine only: set http.public_uri in"
            " config.yaml to the address people open",
            flush=True,
        )


def _room_census(services: Services) -> Callable[[], Iterable[Metric]]:
    def collect() -> Iterable[Metric]:
        rooms, kinds = services.conferences.census()
        yield GaugeMetricFamily("meetings_rooms", "Meetings with someone in them", value=rooms)
        participants = GaugeMetricFamily("meetings_participants", "Participants in meetings, by kind", labels=["kind"])
        for kind in ("webrtc", "phone", "bridge"):
            participants.add_metric([kind], kinds.get(kind, 0))
        yield participants

    return collect


def _sip_counts(stack: SipStack) -> Callable[[], Iterable[Metric]]:
    def collect() -> Iterable[Metric]:
        counters = stack.counters
        requests = CounterMetricFamily("meetings_sip_requests", "SIP requests received, by method", labels=["method"])
        for method, count in sorted(counters.requests.items()):
            requests.add_metric([method], count)
        yield requests
        responses = CounterMetricFamily(
            "meetings_sip_responses", "SIP responses sent, by request method and class", labels=["method", "class"]
        )
        for (method, status_class), count in sorted(counters.responses.items()):
            responses.add_metric([method, status_class], count)
        yield responses
        yield GaugeMetricFamily(
            "meetings_sip_registrations", "Contacts registered now", value=stack.registrar.binding_count()
        )

    return collect


def _hang_up_on_delete(services: Services) -> Callable[[Event], None]:
    tasks: set[asyncio.Task[None]] = set()

    def listener(event: Event) -> None:
        task = asyncio.get_running_loop().create_task(
            services.conferences.hang_up_all(uuid.UUID(event.data["uuid"]), "meeting deleted")
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return listener


def create_app(settings: Settings, services: Services | None = None, auto_bootstrap: bool = False) -> web.Application:
    services = services or build_services(settings)
    redact_access_log()
    make_records_printable()
    log_parse_errors_as_one_line()
    metrics = services.metrics
    middlewares = [webapps.vendor_cache, api_latency_middleware(metrics), error_middleware]
    if settings.http.cors_origins:
        middlewares.insert(0, cors_middleware(settings.http.cors_origins))
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[SERVICES] = services
    app[TOKENS] = services.tokens
    app[TENANTS] = services.tenants

    for module in (
        auth_resource,
        users_resource,
        meetings_resource,
        authorizations_resource,
        ingresses_resource,
        confbridge_resource,
        calld_resource,
        websocketd,
        openapi_resource,
    ):
        app.router.add_routes(module.routes)
    loop_monitor = LoopMonitor(metrics)
    health = Health(
        services.db,
        loop_monitor,
        database_timeout=settings.health.database_timeout_seconds,
        loop_stall_seconds=settings.health.loop_stall_seconds,
    )
    app[HEALTH] = health
    app.router.add_routes(health_routes(health))
    if settings.metrics.token:
        app.router.add_get("/metrics", metrics_handler(metrics, settings.metrics.token))
    metrics.add_collector(_room_census(services))

    def meeting_name(meeting_uuid: UUID) -> str | None:
        room = app[CALL_CONTROL].rooms.get(meeting_uuid)
        return room.bridge["name"] if room is not None else None

    live = LiveView(metrics, services.conferences, loop_monitor, meeting_name)
    app.router.add_routes(live_routes(live))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await start_services(services)
        broker = None
        if settings.bus.enabled:
            broker = BrokerLink(services.bus, settings.bus.url, settings.bus.exchange, settings.bus.cluster)
            broker.start()
            app[BROKER] = broker
        loop_monitor.start()
        live.start()
        metrics_runner = None
        if settings.metrics.port is not None:
            metrics_runner, app[METRICS_PORT] = await start_listener(
                metrics, settings.metrics.host, settings.metrics.port
            )
        if auto_bootstrap and not await has_admin(services):
            result = await bootstrap(services, "admin", None)
            print("First start: " + result.describe().replace("\n", "\n  "), flush=True)
        if auto_bootstrap:
            _tell_link_base(services)

        async def expire(meeting_uuid: UUID) -> None:
            meeting = await services.meetings.find(meeting_uuid)
            if meeting is not None and not meeting.persistent:
                # Hang up first, so participants hear why; the deletion then finds the room empty.
                await services.conferences.hang_up_all(meeting.uuid, "meeting expired")
                # every instance's timer fires; the database lets one delete it (and say so on the bus)
                if await services.meetings.delete(meeting):
                    metrics.expiries.inc()

        expiry = ExpiryScheduler(services.bus, expire)
        app[EXPIRY] = expiry
        for meeting in await services.meetings.all_expiring():
            expiry.schedule(meeting.uuid, meeting.expire_time(services.meetings.expiry_seconds))
        unsubscribe = services.bus.subscribe(_hang_up_on_delete(services), "meeting_deleted")
        await services.tokens.purge_expired()
        await stack.start_udp(settings.sip.host, settings.sip.udp_port)
        await stack.start_tcp(settings.sip.host, settings.sip.tcp_port)
        sip_tls = sip_context(settings)
        if sip_tls is not None and settings.sip.tls_port is not None:
            await stack.start_tls(settings.sip.host, settings.sip.tls_port, sip_tls)
        await trunk.resolve()
        if workers is not None:
            await workers.start()
        await media.start()
        if bridge is not None:
            await bridge.start()
        yield
        unsubscribe()
        if bridge is not None:
            await bridge.close()
        await control.close()
        if workers is not None:
            await workers.stop()
        await stack.close()
        await expiry.close()
        if broker is not None:
            await broker.close()
        await live.close()
        await loop_monitor.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await services.db.close()
        services.hashing.close()

    media: MediaRooms
    workers = None
    if settings.media.remote:
        # rooms in media worker processes, over RabbitMQ; those of this machine started (and ended) here
        media = RemoteMedia(
            settings.bus.url,
            settings.media.workers_exchange,
            request_timeout=settings.media.worker_request_timeout_seconds,
        )
        if settings.media.workers:
            workers = app[MEDIA_WORKERS] = WorkerProcesses(settings)
    else:
        media = LocalMedia(SFU(media_settings(settings)))
    metrics.add_collector(media_collector(media.media_counters))
    control = CallControl(
        settings,
        media,
        DialPlan(services.meetings),
        services.conferences,
        services.confbridge,
        services.capacity,
        metrics,
    )
    # Asterisk may route phones in (trunk peers) and, when enabled, each room is bridged to its ConfBridge.
    trunk = TrunkPeers(settings.asterisk.trunk_peers)
    stack = SipStack(
        StackConfig(
            domain=settings.sip.domain,
            digest_algorithms=tuple(settings.sip.digest_algorithms),
            connections=ConnectionLimits(
                max_connections=settings.sip.max_connections,
                max_connections_per_source=settings.sip.max_connections_per_source,
                message_timeout=settings.sip.message_timeout_seconds,
                idle_timeout=settings.sip.idle_timeout_seconds,
            ),
            udp_max_request=settings.sip.udp_max_request,
            udp_max_bodyless_request=settings.sip.udp_max_bodyless_request,
            max_transactions_per_source=settings.sip.max_transactions_per_source,
            max_transactions=settings.sip.max_transactions,
            overload_retry_after=settings.sip.overload_retry_after,
            tls_client=asterisk_client_context(settings) if settings.asterisk.transport == "tls" else None,
        ),
        AccountDirectory(services.users, services.meetings, trunk if trunk else None),
        invite_handler=control,
        source_trust=trunk if trunk else None,
        login_throttle=SipLoginThrottle(services.login_throttle),
    )
    bridge = None
    if settings.asterisk.enabled:
        bridge = AsteriskBridge(
            settings.asterisk, settings.sip.domain, control, stack, services.meetings, services.tenants, services.bus
        )
        app[ASTERISK_BRIDGE] = bridge
    app[SIP_STACK] = stack
    app[CALL_CONTROL] = control
    metrics.add_collector(_sip_counts(stack))
    health.calld_components["sip"] = lambda: not stack.closed
    # SIP over WebSocket shares the API's host and port (and TLS): what Wazo's SDK expects.
    app.router.add_get("/api/asterisk/ws", stack.websocket.handle)
    webapps.add_routes(app)
    app.cleanup_ctx.append(lifecycle)
    return app
