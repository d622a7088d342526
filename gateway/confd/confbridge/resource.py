"""/api/confd/1.1/asterisk/confbridge/{profile}: GET 200, PUT 204 replacing the whole set; master admins."""

from __future__ import annotations

from aiohttp import web

from gateway.auth.context import authenticate, require_master_admin
from gateway.confd.confbridge.schema import parse_options
from gateway.http.errors import json_response
from gateway.http.validation import json_body, refuse_nul
from gateway.services import SERVICES

routes = web.RouteTableDef()
PREFIX = "/api/confd/1.1/asterisk/confbridge"


def _profile(name: str) -> None:
    @routes.get(f"{PREFIX}/{name}")
    async def read(request: web.Request) -> web.Response:
        caller = await authenticate(request, f"confd.asterisk.confbridge.{name}.read")
        require_master_admin(request, caller)
        return json_response({"options": request.app[SERVICES].confbridge.get(name)})

    @routes.put(f"{PREFIX}/{name}")
    async def replace(request: web.Request) -> web.Response:
        caller = await authenticate(request, f"confd.asterisk.confbridge.{name}.update")
        require_master_admin(request, caller)
        data = await json_body(request)
        refuse_nul(data)  # unknown options are kept, so every key and value is stored
        options = parse_options(name, data)
        await request.app[SERVICES].confbridge.replace(name, options)
        return web.Response(status=204)


_profile("wazo_default_bridge")
_profile("wazo_default_user")
