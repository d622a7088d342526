"""The composition root: services, HTTP routes, start-up and shutdown in one aiohttp application."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from uuid import UUID

from aiohttp import web

from gateway import webapps, websocketd
from gateway.auth import resource as auth_resource
from gateway.auth.context import TENANTS, TOKENS
from gateway.auth.tenants import TenantService
from gateway.auth.tokens import TokenService
from gateway.bootstrap import bootstrap, has_admin
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
from gateway.http.cors import cors_middleware
from gateway.http.errors import error_middleware
from gateway.openapi import resource as openapi_resource
from gateway.services import SERVICES, Services
from sfu.server import SFU
from signaling.stack import SipStack, StackConfig

logger = logging.getLogger(__name__)

EXPIRY = web.AppKey("expiry", ExpiryScheduler)
SIP_STACK = web.AppKey("sip_stack", SipStack)
CALL_CONTROL = web.AppKey("call_control", CallControl)
ASTERISK_BRIDGE = web.AppKey("asterisk_bridge", AsteriskBridge)
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"


def build_services(settings: Settings) -> Services:
    db = Database(settings.database.url)
    bus = EventBus()
    tokens = TokenService(db)
    tenants = TenantService(db)
    ingresses = IngressService(db)
    meetings = MeetingService(
        db, ingresses, MeetingNotifier(bus), settings.meetings.exten_prefix, settings.meetings.expiry_seconds
    )
    authorizations = AuthorizationService(db, AuthorizationNotifier(bus))
    meetings.on_authorization_lifted.append(authorizations.accept_pending)
    return Services(
        settings=settings,
        db=db,
        bus=bus,
        tenants=tenants,
        tokens=tokens,
        users=UserService(db, tokens),
        ingresses=ingresses,
        meetings=meetings,
        authorizations=authorizations,
        confbridge=ConfbridgeService(db),
        conferences=Conferences(bus),
    )


async def start_services(services: Services) -> None:
    await services.db.migrate()
    await services.tenants.load()
    master = services.tenants.master
    await services.ingresses.load(master.uuid if master else None)
    await services.confbridge.load()


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
    middlewares = [webapps.vendor_cache, error_middleware]
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

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await start_services(services)
        if auto_bootstrap and not await has_admin(services):
            result = await bootstrap(services, "admin", None)
            print("First start: " + result.describe().replace("\n", "\n  "), flush=True)

        async def expire(meeting_uuid: UUID) -> None:
            meeting = await services.meetings.find(meeting_uuid)
            if meeting is not None and not meeting.persistent:
                # Hang up first, so participants hear why; the deletion then finds the room empty.
                await services.conferences.hang_up_all(meeting.uuid, "meeting expired")
                await services.meetings.delete(meeting)

        expiry = ExpiryScheduler(services.bus, settings.meetings.expiry_seconds, expire)
        app[EXPIRY] = expiry
        for meeting in await services.meetings.all_expiring():
            expiry.schedule(meeting.uuid, meeting.creation_time, meeting.persistent)
        unsubscribe = services.bus.subscribe(_hang_up_on_delete(services), "meeting_deleted")
        await services.tokens.purge_expired()
        await stack.start_udp(settings.sip.host, settings.sip.udp_port)
        await stack.start_tcp(settings.sip.host, settings.sip.tcp_port)
        await trunk.resolve()
        if bridge is not None:
            await bridge.start()
        yield
        unsubscribe()
        if bridge is not None:
            await bridge.close()
        await control.close()
        await stack.close()
        await expiry.close()
        await services.db.close()

    control = CallControl(
        settings,
        SFU(media_settings(settings)),
        DialPlan(services.meetings),
        services.conferences,
        services.confbridge,
        services.capacity,
    )
    # Asterisk may route phones in (trunk peers) and, when enabled, each room is bridged to its ConfBridge.
    trunk = TrunkPeers(settings.asterisk.trunk_peers)
    stack = SipStack(
        StackConfig(
            domain=settings.sip.domain,
            udp_max_request=settings.sip.udp_max_request,
            udp_max_bodyless_request=settings.sip.udp_max_bodyless_request,
            max_transactions_per_source=settings.sip.max_transactions_per_source,
            max_transactions=settings.sip.max_transactions,
            overload_retry_after=settings.sip.overload_retry_after,
        ),
        AccountDirectory(services.users, services.meetings, trunk if trunk else None),
        invite_handler=control,
        source_trust=trunk if trunk else None,
    )
    bridge = None
    if settings.asterisk.enabled:
        bridge = AsteriskBridge(
            settings.asterisk, settings.sip.domain, control, stack, services.meetings, services.tenants, services.bus
        )
        app[ASTERISK_BRIDGE] = bridge
    app[SIP_STACK] = stack
    app[CALL_CONTROL] = control
    # SIP over WebSocket shares the API's host and port (and TLS): what Wazo's SDK expects.
    app.router.add_get("/api/asterisk/ws", stack.websocket.handle)
    webapps.add_routes(app)
    app.cleanup_ctx.append(lifecycle)
    return app
