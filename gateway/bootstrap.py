"""First-run set-up: the master tenant, an admin with every right, and the master tenant's HTTP ingress."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.auth.passwords import random_secret
from gateway.confd.users.service import UserRecord
from gateway.config import Settings
from gateway.http.lists import ListParams
from gateway.services import Services

MASTER_TENANT_NAME = "master"


@dataclass(frozen=True)
class BootstrapResult:
    tenant_created: bool
    admin: UserRecord | None
    password: str | None
    ingress_uri: str | None

    def describe(self) -> str:
        lines = []
        if self.tenant_created:
            lines.append(f"created the master tenant ({MASTER_TENANT_NAME})")
        if self.admin is not None:
            lines.append(f"created the admin user {self.admin.username} (uuid {self.admin.uuid})")
            if self.password is not None:
                lines.append(f"  password: {self.password}   (shown once: keep it)")
        if self.ingress_uri:
            lines.append(f"set the master tenant's HTTP ingress to {self.ingress_uri}")
        return "\n".join(lines) or "nothing to do: the master tenant and the admin user exist"


def is_loopback_uri(uri: str) -> bool:
    """Whether people on other machines could not reach `uri` (localhost, 127.x, ::1)."""
    host = (urlsplit(uri).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_ingress(settings: Settings) -> str:
    if settings.http.public_uri:
        return settings.http.public_uri
    scheme = "https" if settings.http.tls_cert else "http"
    host = settings.http.host if settings.http.host not in ("0.0.0.0", "::", "") else "localhost"
    return f"{scheme}://{host}:{settings.http.port}"


async def bootstrap(services: Services, username: str, password: str | None) -> BootstrapResult:
    """Idempotent: what exists is left as it is. A missing password is generated and returned once."""
    tenants = services.tenants
    master = tenants.master
    tenant_created = master is None
    if master is None:
        master = await tenants.create(MASTER_TENANT_NAME, None)
        await services.ingresses.load(master.uuid)
    admin = None
    generated = None
    if await services.users.find_by_username(username) is None:
        generated = password or random_secret(16)
        admin = await services.users.create(master.uuid, username, generated, admin=True)
    ingress_uri = None
    if services.ingresses.of_tenant(master.uuid) is None:
        ingress_uri = default_ingress(services.settings)
        await services.ingresses.create(master.uuid, ingress_uri, from_config=True)
    return BootstrapResult(tenant_created, admin, generated if password is None else None, ingress_uri)


async def has_admin(services: Services) -> bool:
    master = services.tenants.master
    if master is None:
        return False
    _, users = await services.users.search({master.uuid}, ListParams())
    return any(user.admin for user in users)
