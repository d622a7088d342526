"""Who is calling and on behalf of which tenant: X-Auth-Token, ACL checks and the Wazo-Tenant header."""

from __future__ import annotations

import uuid
from uuid import UUID

from aiohttp import web

from gateway.auth.tenants import TenantService
from gateway.auth.tokens import Caller, TokenService
from gateway.http.errors import Forbidden, Unauthorized

TOKENS = web.AppKey("tokens", TokenService)
TENANTS = web.AppKey("tenants", TenantService)


def request_token(request: web.Request) -> str | None:
    return request.headers.get("X-Auth-Token") or request.query.get("token")


async def authenticate(request: web.Request, required_acl: str) -> Caller:
    token = request_token(request)
    if not token:
        raise Unauthorized("Unauthorized: no X-Auth-Token", {"invalid_token": None})
    caller = await request.app[TOKENS].check(token)
    if caller is None:
        raise Unauthorized("Unauthorized: invalid or expired token", {"invalid_token": "invalid"})
    if not caller.may(required_acl):
        raise Forbidden(f"Forbidden: {required_acl} is not granted to this token", {"required_acl": required_acl})
    return caller


def acting_tenant(request: web.Request, caller: Caller) -> UUID:
    """The tenant a request acts on: the caller's own, or a sub-tenant an admin names in Wazo-Tenant."""
    raw = request.headers.get("Wazo-Tenant")
    if not raw:
        return caller.tenant_uuid
    try:
        wanted = uuid.UUID(raw)
    except ValueError:
        raise Unauthorized("Unauthorized tenant: Wazo-Tenant is not a UUID", {"tenant_uuid": raw}) from None
    if wanted == caller.tenant_uuid:
        return wanted
    if not caller.admin or not request.app[TENANTS].visible_from(caller.tenant_uuid, wanted):
        raise Unauthorized("Unauthorized tenant", {"tenant_uuid": raw})
    return wanted


def tenants_in_scope(request: web.Request, tenant: UUID, recurse: bool) -> set[UUID]:
    return request.app[TENANTS].descendants(tenant) if recurse else {tenant}


def require_master_admin(request: web.Request, caller: Caller) -> None:
    if not caller.admin or not request.app[TENANTS].is_master(caller.tenant_uuid):
        raise Forbidden("Forbidden: only administrators of the master tenant may do this")
