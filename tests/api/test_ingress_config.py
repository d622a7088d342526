"""The master tenant's ingress follows config.yaml (http.public_uri) until an operator sets one through the API."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from gateway.app import build_services, start_services
from gateway.bootstrap import bootstrap
from gateway.db.engine import Database
from tests.conftest import Api, make_settings


async def _restart(database_url: str, public_uri: str) -> str | None:
    services = build_services(make_settings(database_url, MEETINGS_HTTP__PUBLIC_URI=public_uri))
    try:
        await start_services(services)
        master = services.tenants.master
        assert master is not None
        return services.ingresses.uri_for(master.uuid)
    finally:
        await services.db.close()


async def test_configured_public_uri_wins_until_the_api_sets_one(api: Api, database_url: str) -> None:
    # the api fixture bootstrapped with http.public_uri = https://meetings.example.com
    assert await _restart(database_url, "https://meet.example.org") == "https://meet.example.org"

    listing = await api.call("GET", "/api/confd/1.1/ingresses/http", api.admin_token)
    assert [item["uri"] for item in listing["items"]] == ["https://meetings.example.com"]  # this process's view
    path = f"/api/confd/1.1/ingresses/http/{listing['items'][0]['uuid']}"
    await api.call("PUT", path, api.admin_token, {"uri": "https://chosen.example.net"}, expect=204)
    assert await _restart(database_url, "https://meet.example.org") == "https://chosen.example.net"


async def test_an_ingress_stored_before_the_upgrade_follows_the_configuration(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    db = Database(url)
    await db.migrate("0002")
    master, other = uuid.uuid4(), uuid.uuid4()
    async with db.write() as connection:
        for tenant, parent in ((master, None), (other, master)):
            await connection.execute(
                text("INSERT INTO tenants (uuid, name, parent_uuid, created_at) VALUES (:u, :n, :p, '2026-01-01')"),
                {"u": tenant.hex, "n": str(tenant)[:8], "p": parent.hex if parent else None},
            )
            await connection.execute(
                text("INSERT INTO ingresses_http (uuid, tenant_uuid, uri) VALUES (:u, :t, 'http://localhost:8080')"),
                {"u": uuid.uuid4().hex, "t": tenant.hex},
            )
    await db.close()

    services = build_services(make_settings(url, MEETINGS_HTTP__PUBLIC_URI="https://meet.example.org"))
    try:
        await start_services(services)
        assert services.ingresses.uri_for(master) == "https://meet.example.org"
        # a sub-tenant's ingress was always an operator's: untouched
        assert services.ingresses.uri_for(other) == "http://localhost:8080"
        # bootstrap has nothing left to do, and changes nothing
        result = await bootstrap(services, "admin", "admin-password-1")
        assert result.ingress_uri is None
    finally:
        await services.db.close()
