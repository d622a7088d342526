"""/api/auth/0.1: tokens (HTTP Basic login, check, revoke) and tenants."""

from __future__ import annotations

import binascii
import datetime
import uuid
from base64 import b64decode
from typing import Any
from uuid import UUID

from aiohttp import web

from gateway.auth.context import TENANTS, TOKENS, acting_tenant, authenticate, require_master_admin
from gateway.auth.passwords import HashingBusy
from gateway.auth.schema import TenantCreate, TokenRequest
from gateway.auth.throttle import retry_after
from gateway.auth.tokens import Caller
from gateway.db.models import User
from gateway.events import ORIGIN_UUID
from gateway.http.errors import Forbidden, InvalidData, NotFound, TooManyRequests, Unauthorized, json_response
from gateway.http.validation import body, json_body, path_uuid, validate
from gateway.services import SERVICES, Services

routes = web.RouteTableDef()
PREFIX = "/api/auth/0.1"


def _basic_credentials(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("Authentication Failed: HTTP Basic credentials are required")
    try:
        username, colon, password = b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("Authentication Failed: malformed HTTP Basic credentials") from None
    if not colon:
        raise Unauthorized("Authentication Failed: malformed HTTP Basic credentials")
    return username, password


async def _login(services: Services, username: str, password: str, source: str) -> User | None:
    """The user, or None for wrong credentials; 429 while the username or the source failed too often."""
    throttle = services.login_throttle
    wait = throttle.admit(username, source)
    if wait:
        raise TooManyRequests("Too many failed logins: try again later", retry_after(wait))
    user = None
    try:
        # A name with control characters (NUL ...) is nobody's, and not every database accepts it in a query.
        suspect = throttle.suspect(username, source)
        user = await services.users.login(username, password, suspect) if username.isprintable() else None
    except HashingBusy:
        throttle.succeeded(username, source)  # not a failure: the password was never checked
        raise
    if user is not None:
        throttle.succeeded(username, source)
    return user


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat()


def token_json(caller: Caller) -> dict[str, Any]:
    return {
        "token": caller.token,
        "session_uuid": str(caller.session_uuid),
        "auth_id": str(caller.user_uuid),
        "pbx_user_uuid": str(caller.user_uuid),
        "xivo_uuid": ORIGIN_UUID,
        "issued_at": _iso(caller.issued_at),
        "utc_issued_at": _iso(caller.issued_at),
        "expires_at": _iso(caller.expires_at),
        "utc_expires_at": _iso(caller.expires_at),
        "acl": list(caller.acl),
        "metadata": {
            "uuid": str(caller.user_uuid),
            "tenant_uuid": str(caller.tenant_uuid),
            "auth_id": str(caller.user_uuid),
            "pbx_user_uuid": str(caller.user_uuid),
            "xivo_uuid": ORIGIN_UUID,
            "username": caller.username,
            "purpose": "user",
            "admin": caller.admin,
        },
    }


@routes.post(f"{PREFIX}/token")
async def create_token(request: web.Request) -> web.Response:
    username, password = _basic_credentials(request)
    form = validate(TokenRequest, await json_body(request, optional=True))
    settings = request.app[SERVICES].settings.auth
    expiration = form.expiration or settings.default_token_expiration
    if expiration > settings.max_token_expiration:
        raise InvalidData({"expiration": f"at most {settings.max_token_expiration} seconds"})
    services = request.app[SERVICES]
    user = await _login(services, username, password, request.remote or "")
    if user is None:
        raise Unauthorized("Authentication Failed: wrong username or password")
    caller = await request.app[TOKENS].issue(user, expiration, request.remote, request.headers.get("User-Agent"))
    return json_response({"data": token_json(caller)})


async def _checked(request: web.Request) -> Caller:
    caller = await request.app[TOKENS].check(request.match_info["token"])
    if caller is None:
        raise NotFound("tokens", token="(hidden)")
    scope = request.query.get("scope")
    if scope and not caller.may(scope):
        raise Forbidden(f"Unauthorized ACL: {scope}", {"scope": scope})
    tenant = request.query.get("tenant")
    if tenant and not request.app[TENANTS].visible_from(caller.tenant_uuid, _uuid_or_404(tenant)):
        raise Forbidden("Unauthorized tenant", {"tenant": tenant})
    return caller


def _uuid_or_404(raw: str) -> UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("tenants", uuid=raw) from None


# GET also answers HEAD (aiohttp adds it): 200 for a valid token, 404 otherwise.
@routes.get(PREFIX + "/token/{token}")
async def check_token(request: web.Request) -> web.Response:
    return json_response({"data": token_json(await _checked(request))})


@routes.delete(PREFIX + "/token/{token}")
async def revoke_token(request: web.Request) -> web.Response:
    await request.app[TOKENS].revoke(request.match_info["token"])
    return json_response({"data": {"message": "success"}})


@routes.get(f"{PREFIX}/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    caller = await authenticate(request, "auth.tenants.read")
    tenants = request.app[TENANTS]
    visible = tenants.descendants(acting_tenant(request, caller))
    items = [tenant.to_json() for tenant in tenants.all() if tenant.uuid in visible]
    items.sort(key=lambda item: str(item["name"]))
    return json_response({"total": len(items), "filtered": len(items), "items": items})


@routes.post(f"{PREFIX}/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    caller = await authenticate(request, "auth.tenants.create")
    require_master_admin(request, caller)
    form = await body(request, TenantCreate, "tenants")
    tenants = request.app[TENANTS]
    parent = form.parent_uuid or caller.tenant_uuid
    if tenants.get(parent) is None:
        raise InvalidData({"parent_uuid": "no such tenant"}, "tenants")
    tenant = await tenants.create(form.name, parent)
    return json_response(tenant.to_json(), status=200)


@routes.get(PREFIX + "/tenants/{tenant_uuid}")
async def get_tenant(request: web.Request) -> web.Response:
    tenant_uuid = path_uuid(request, "tenant_uuid", "tenants")
    caller = await authenticate(request, f"auth.tenants.{tenant_uuid}.read")
    tenants = request.app[TENANTS]
    tenant = tenants.get(tenant_uuid)
    if tenant is None or not tenants.visible_from(caller.tenant_uuid, tenant_uuid):
        raise NotFound("tenants", uuid=str(tenant_uuid))
    return json_response(tenant.to_json())
