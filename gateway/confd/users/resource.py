"""/api/confd/1.1/users: tenant admins manage users; /users/me is the caller's own profile and SIP line."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.auth.context import acting_tenant, authenticate, tenants_in_scope
from gateway.auth.tokens import Caller
from gateway.confd.users.schema import UserCreate, UserUpdate
from gateway.confd.users.service import ORDERABLE, UserRecord
from gateway.http.errors import Forbidden, json_response
from gateway.http.links import link
from gateway.http.lists import parse_list_params
from gateway.http.validation import body, path_uuid
from gateway.services import SERVICES

routes = web.RouteTableDef()
PREFIX = "/api/confd/1.1"


def user_json(request: web.Request, user: UserRecord, with_sip: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": str(user.uuid),
        "tenant_uuid": str(user.tenant_uuid),
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "admin": user.admin,
        "links": link(request, "users", f"{PREFIX}/users/{user.uuid}"),
    }
    if with_sip:
        domain = request.app[SERVICES].settings.sip.domain
        data["sip"] = {
            "username": user.sip_username,
            "password": user.sip_password,
            "domain": domain,
            "uri": f"sip:{user.sip_username}@{domain}",
        }
    return data


@routes.get(f"{PREFIX}/users/me")
async def get_me(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.users.me.read")
    user = await request.app[SERVICES].users.get(caller.user_uuid)
    return json_response(user_json(request, user, with_sip=True))


@routes.get(f"{PREFIX}/users")
async def list_users(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.users.read")
    params = parse_list_params(request.query, ORDERABLE)
    tenants = tenants_in_scope(request, acting_tenant(request, caller), params.recurse)
    total, users = await request.app[SERVICES].users.search(tenants, params)
    return json_response({"total": total, "items": [user_json(request, user, with_sip=True) for user in users]})


@routes.post(f"{PREFIX}/users")
async def create_user(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.users.create")
    form = await body(request, UserCreate, "users")
    user = await request.app[SERVICES].users.create(acting_tenant(request, caller), **form.model_dump())
    data = user_json(request, user, with_sip=True)
    return json_response(data, status=201, headers={"Location": data["links"][0]["href"]})


async def _visible_user(request: web.Request, acl_action: str) -> tuple[Caller, UserRecord]:
    user_uuid = path_uuid(request, "user_uuid", "users")
    caller = await authenticate(request, f"confd.users.{user_uuid}.{acl_action}")
    tenants = tenants_in_scope(request, acting_tenant(request, caller), recurse=True)
    return caller, await request.app[SERVICES].users.get(user_uuid, tenants)


# `me` is not a user UUID: /users/me has its own resource, so PUT or DELETE on it is a 405, not a 404 for "me".
USER_PATH = PREFIX + "/users/{user_uuid:(?!me$)[^/]+}"


@routes.get(USER_PATH)
async def get_user(request: web.Request) -> web.Response:
    _, user = await _visible_user(request, "read")
    return json_response(user_json(request, user, with_sip=True))


@routes.put(USER_PATH)
async def update_user(request: web.Request) -> web.Response:
    caller, user = await _visible_user(request, "update")
    form = await body(request, UserUpdate, "users")
    # A user's ACL covers his own record (confd.users.me.#), but admin rights are granted by an administrator.
    if form.admin is not None and form.admin != user.admin and not caller.admin:
        raise Forbidden("Forbidden: only an administrator may change a user's admin rights", {"admin": form.admin})
    await request.app[SERVICES].users.update(user, form.model_dump(exclude_none=True))
    return web.Response(status=204)


@routes.delete(USER_PATH)
async def delete_user(request: web.Request) -> web.Response:
    _, user = await _visible_user(request, "delete")
    await request.app[SERVICES].users.delete(user)
    return web.Response(status=204)
