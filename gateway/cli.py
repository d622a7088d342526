"""The `meetings` command: serve, bootstrap, and operators' user and tenant creation."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from gateway import logs
from gateway.app import build_services, start_services
from gateway.bootstrap import bootstrap
from gateway.config import ConfigError, Settings, load_settings
from gateway.drain import serve_until_drained
from gateway.services import Services
from gateway.tls import http_context


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meetings", description="Meetings server: WebRTC/SIP gateway with an SFU")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("--config", default="config.yaml", help="settings file (default ./config.yaml)")
        return command

    with_config(commands.add_parser("serve", help="start the server"))
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


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"meetings: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.logging.level, settings.logging.format)
    if args.command == "serve":
        serve(settings)
        return
    work: dict[tuple[str, str | None], Callable[[Services, argparse.Namespace], Awaitable[str]]] = {
        ("bootstrap", None): _bootstrap,
        ("user", "create"): _create_user,
        ("tenant", "create"): _create_tenant,
    }
    action = work[(args.command, getattr(args, "action", None))]
    print(asyncio.run(_with_services(settings, lambda services: action(services, args))))
