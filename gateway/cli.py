"""The `meetings` command: serve, a media worker, bootstrap, and operators' user and tenant creation."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from gateway import logs
from gateway.app import build_services, start_services
from gateway.bootstrap import bootstrap
from gateway.calls.media import media_settings
from gateway.config import ConfigError, Settings, describe_error, load_settings
from gateway.drain import serve_until_drained
from gateway.media.worker import MediaWorker, run_worker
from gateway.services import Services
from gateway.tls import http_context


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meetings", description="Meetings server: WebRTC/SIP gateway with an SFU")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("--config", default="config.yaml", help="settings file (default ./config.yaml)")
        return command

    serve_command = with_config(commands.add_parser("serve", help="start the server"))
    serve_command.add_argument(
        "--media-workers", type=int, metavar="N", help="media worker processes to start here (config media.workers)"
    )
    worker = with_config(
        commands.add_parser("media-worker", help="run SFU rooms for servers reaching it over RabbitMQ")
    )
    worker.add_argument("--broker", metavar="URL", help="RabbitMQ, amqp://user:password@host:port/ (config bus.url)")
    worker.add_argument("--exchange", help="the deployment's media exchange (config media.workers_exchange)")
    worker.add_argument("--rtp-ports", metavar="MIN-MAX", help="its RTP port range (config media.rtp_port_min/max)")
    worker.add_argument("--id", help="its name in announcements and logs (default: host, pid and a random suffix)")
    boot = with_config(commands.add_parser("bootstrap", help="create the master tenant and an admin user"))
    boot.add_argument("--username", required=True)
    boot.add_argument("--password", required=True)

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    create_user = with_config(user.add_parser("create", help="create a user"))
    create_user.add_argument("--tenant", required=True, help="tenant name or UUID")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--password", required=True)
    create_user.add_argument("--firstname")
    create_user.add_argument("--lastname")
    create_user.add_argument("--admin", action="store_true", help="administrator of his tenant")

    tenant = commands.add_parser("tenant", help="manage tenants").add_subparsers(dest="action", required=True)
    create_tenant = with_config(tenant.add_parser("create", help="create a tenant under the master tenant"))
    create_tenant.add_argument("name")
    return parser


async def _with_services(settings: Settings, work: Callable[[Services], Awaitable[str]]) -> str:
    services = build_services(settings)
    try:
        await start_services(services)
        return await work(services)
    finally:
        await services.db.close()


async def _bootstrap(services: Services, args: argparse.Namespace) -> str:
    return (await bootstrap(services, args.username, args.password)).describe()


async def _create_user(services: Services, args: argparse.Namespace) -> str:
    tenant = services.tenants.find(args.tenant)
    if tenant is None:
        raise SystemExit(f"meetings: no tenant named {args.tenant}")
    user = await services.users.create(tenant.uuid, args.username, args.password, args.firstname, args.lastname,
                                       args.admin)  # fmt: skip
    return f"created user {user.username} (uuid {user.uuid}) in tenant {tenant.name}; SIP username {user.sip_username}"


async def _create_tenant(services: Services, args: argparse.Namespace) -> str:
    master = services.tenants.master
    if master is None:
        raise SystemExit("meetings: no master tenant yet; run `meetings bootstrap` first")
    if services.tenants.find(args.name):
        return f"tenant {args.name} exists already"
    tenant = await services.tenants.create(args.name, master.uuid)
    return f"created tenant {tenant.name} (uuid {tenant.uuid})"


def serve(settings: Settings) -> None:
    asyncio.run(serve_until_drained(settings, http_context(settings)))


def _overridden(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with the command line's overrides, validated as the file's are."""
    media: dict[str, object] = {}
    bus: dict[str, object] = {}
    if getattr(args, "media_workers", None) is not None:
        media["workers"] = args.media_workers
    if getattr(args, "exchange", None):
        media["workers_exchange"] = args.exchange
    if getattr(args, "rtp_ports", None):
        low, _, high = args.rtp_ports.partition("-")
        if not (low.isdigit() and high.isdigit()):
            raise ConfigError(f"--rtp-ports {args.rtp_ports}: expected MIN-MAX, e.g. 20000-29999")
        media.update(rtp_port_min=int(low), rtp_port_max=int(high))
    if getattr(args, "broker", None):
        bus["url"] = args.broker
    if not media and not bus:
        return settings
    data = settings.model_dump()
    data["media"].update(media)
    data["bus"].update(bus)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None


def media_worker(settings: Settings, worker_id: str | None) -> None:
    worker = MediaWorker(settings.bus.url, settings.media.workers_exchange, media_settings(settings), worker_id)
    asyncio.run(run_worker(worker))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = _overridden(load_settings(args.config), args)
    except ConfigError as exc:
        print(f"meetings: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.logging.level, settings.logging.format)
    if args.command == "serve":
        serve(settings)
        return
    if args.command == "media-worker":
        media_worker(settings, args.id)
        return
    work: dict[tuple[str, str | None], Callable[[Services, argparse.Namespace], Awaitable[str]]] = {
        ("bootstrap", None): _bootstrap,
        ("user", "create"): _create_user,
        ("tenant", "create"): _create_tenant,
    }
    action = work[(args.command, getattr(args, "action", None))]
    print(asyncio.run(_with_services(settings, lambda services: action(services, args))))
