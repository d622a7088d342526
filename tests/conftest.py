"""Shared fixtures: a real server on a real socket, on SQLite and on PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientResponse, TCPConnector
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import build_services, create_app
from gateway.bootstrap import bootstrap
from gateway.config import Settings, load_settings
from gateway.services import Services

POSTGRES_HOST = os.environ.get("MEETINGS_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("MEETINGS_TEST_PG_PORT", "5432"))
POSTGRES_ADMIN_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"


def _postgres_answers() -> bool:
    try:
        with socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=1):
            return True
    except OSError:
        return False


POSTGRES_UP = _postgres_answers()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs two pytest-xdist workers (`--dist loadgroup`): one takes every test as one group, in order,
    the other the tests marked `waits`, which spend most of their time on a shaped link or a timer. Running more of
    the suite side by side on this machine's two cores would starve the media tests' clients and Chromium."""
    for item in items:
        if item.get_closest_marker("waits") is None:
            item.add_marker(pytest.mark.xdist_group("serial"))


def pytest_report_header() -> str:
    if POSTGRES_UP:
        return f"PostgreSQL: {POSTGRES_HOST}:{POSTGRES_PORT} answers; API tests run on SQLite and PostgreSQL"
    return f"PostgreSQL: NOT answering at {POSTGRES_HOST}:{POSTGRES_PORT}: its API test runs are SKIPPED"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/meetings.db"
        return
    if not POSTGRES_UP:
        pytest.skip(f"PostgreSQL is not answering at {POSTGRES_HOST}:{POSTGRES_PORT}")
    name = f"meetings_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def make_settings(database_url: str, **overrides: str) -> Settings:
    environ = {
        "MEETINGS_DATABASE__URL": database_url,
        "MEETINGS_HTTP__HOST": "127.0.0.1",
        "MEETINGS_HTTP__PORT": "0",
        "MEETINGS_SIP__HOST": "127.0.0.1",
        "MEETINGS_SIP__UDP_PORT": "0",
        "MEETINGS_SIP__TCP_PORT": "0",
        "MEETINGS_MEDIA__HOST_ADDRESSES": "[127.0.0.1]",
        "MEETINGS_HTTP__PUBLIC_URI": "https://meetings.example.com",
    }
    environ.update(overrides)
    return load_settings(None, environ)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


ADMIN_PASSWORD = "admin-secret-password"


@dataclass
class Api:
    """A client of the running server, with the master admin's token at hand."""

    client: TestClient[Any, Any]
    services: Services
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    async def request(
        self, method: str, path: str, token: str | None = None, json: Any = None, **kwargs: Any
    ) -> ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["X-Auth-Token"] = token
        return await self.client.request(method, path, json=json, headers=headers, **kwargs)

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, expect: int = 200, **kwargs: Any
    ) -> Any:
        response = await self.request(method, path, token, json, **kwargs)
        text = await response.text()
        assert response.status == expect, f"{method} {path}: {response.status} {text}"
        return await response.json() if text and response.content_type == "application/json" else None

    async def login(self, username: str, password: str, expiration: int | None = None) -> str:
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        body = {"expiration": expiration} if expiration else None
        data = await self.call("POST", "/api/auth/0.1/token", json=body, headers={"Authorization": f"Basic {basic}"})
        return str(data["data"]["token"])

    async def create_user(
        self, username: str, password: str = "user-password", tenant: str | None = None, admin: bool = False
    ) -> tuple[dict[str, Any], str]:
        headers = {"Wazo-Tenant": tenant} if tenant else {}
        user = await self.call(
            "POST",
            "/api/confd/1.1/users",
            self.admin_token,
            {"username": username, "password": password, "firstname": username.title(), "admin": admin},
            expect=201,
            headers=headers,
        )
        return user, await self.login(username, password)

    async def create_tenant(self, name: str) -> str:
        tenant = await self.call("POST", "/api/auth/0.1/tenants", self.admin_token, {"name": name})
        return str(tenant["uuid"])

    async def create_meeting(self, token: str, **fields: Any) -> dict[str, Any]:
        body = {"name": "Weekly sync", **fields}
        result: dict[str, Any] = await self.call("POST", "/api/confd/1.1/users/me/meetings", token, body, expect=201)
        return result


@pytest.fixture
def server_host() -> str:
    """Where the test server listens (a weak-link test puts it on its veth's address, for the namespace to reach)."""
    return "127.0.0.1"


async def start_api(
    settings: Settings, aiohttp_client: Any, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> Api:
    """The server on a real socket (over TLS with `tls`: HTTPS and WSS), bootstrapped, its admin signed in."""
    services = build_services(settings)
    app = create_app(settings, services)
    if tls is None:
        client = await aiohttp_client(app, server_kwargs={"host": host})
    else:
        server = TestServer(app, host=host)
        await server.start_server(ssl=tls)
        client = await aiohttp_client(server, connector=TCPConnector(ssl=False))
    await bootstrap(services, "admin", ADMIN_PASSWORD)
    handle = Api(client, services)
    handle.admin_token = await handle.login("admin", ADMIN_PASSWORD)
    return handle


@pytest.fixture
async def api(settings: Settings, aiohttp_client: Any, server_host: str) -> AsyncIterator[Api]:
    yield await start_api(settings, aiohttp_client, host=server_host)
