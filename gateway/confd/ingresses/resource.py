"""/api/confd/1.1/ingresses/http: the public URI of the server for a tenant (its guests' entry point)."""

from __future__ import annotations

from aiohttp import web

from gateway.auth.context import acting_tenant, authenticate, tenants_in_scope
from gateway.confd.ingresses.schema import IngressBody
from gateway.confd.ingresses.service import Ingress
from gateway.http.errors import InvalidData, json_response
from gateway.http.lists import parse_list_params
from gateway.http.validation import body, path_uuid
from gateway.services import SERVICES

routes = web.RouteTableDef()
PREFIX = "/api/confd/1.1/ingresses/http"


@routes.get(PREFIX)
async def list_ingresses(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.ingresses.http.read")
    view = request.query.get("view")
    if view not in (None, "fallback"):
        raise InvalidData({"view": "must be fallback"})
    params = parse_list_params(request.query, ("uri",))
    tenant = acting_tenant(request, caller)
    ingresses = request.app[SERVICES].ingresses
    found: list[Ingress] = []
    if view == "fallback":
        applying = ingresses.applying_to(tenant)
        found = [applying] if applying else []
    else:
        for scope in sorted(tenants_in_scope(request, tenant, params.recurse), key=str):
            own = ingresses.of_tenant(scope)
            if own:
                found.append(own)
    return json_response({"total": len(found), "items": [ingress.to_json() for ingress in found]})


@routes.post(PREFIX)
async def create_ingress(request: web.Request) -> web.Response:
    caller = await authenticate(request, "confd.ingresses.http.create")
    form = await body(request, IngressBody, "ingresses")
    ingress = await request.app[SERVICES].ingresses.create(acting_tenant(request, caller), form.uri)
    return json_response(ingress.to_json(), status=201, headers={"Location": f"{PREFIX}/{ingress.uuid}"})


async def _ingress(request: web.Request, action: str) -> Ingress:
    ingress_uuid = path_uuid(request, "ingress_uuid", "ingresses")
    caller = await authenticate(request, f"confd.ingresses.http.{ingress_uuid}.{action}")
    tenants = tenants_in_scope(request, acting_tenant(request, caller), recurse=False)
    return request.app[SERVICES].ingresses.get(ingress_uuid, tenants)


@routes.get(PREFIX + "/{ingress_uuid}")
async def get_ingress(request: web.Request) -> web.Response:
    return json_response((await _ingress(request, "read")).to_json())


@routes.put(PREFIX + "/{ingress_uuid}")
async def update_ingress(request: web.Request) -> web.Response:
    ingress = await _ingress(request, "update")
    form = await body(request, IngressBody, "ingresses")
    await request.app[SERVICES].ingresses.update(ingress, form.uri)
    return web.Response(status=204)


@routes.delete(PREFIX + "/{ingress_uuid}")
async def delete_ingress(request: web.Request) -> web.Response:
    ingress = await _ingress(request, "delete")
    await request.app[SERVICES].ingresses.delete(ingress)
    return web.Response(status=204)
