"""The two browser apps (users at /, guests at /guests/) and sip.js from web/node_modules, as static files,
plus the small JSON document the apps read to reach SIP over WebSocket (domain, path, ICE servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.http.errors import Handler, json_response
from gateway.services import SERVICES

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
SIPJS_ROOT = WEB_ROOT / "node_modules" / "sip.js" / "lib"
# sip.js is hundreds of small ES modules: let browsers keep them, so a guest's page loads fast the second time.
VENDOR_CACHE = "public, max-age=86400"
# The apps' own files change with each deployment: browsers revalidate them (cheap 304s) on every load.
APP_CACHE = "no-cache"
SIP_WEBSOCKET_PATH = "/api/asterisk/ws"
CONFIG_PATH = "/api/meetings-web/config.json"


def _index(folder: str) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / folder / "index.html", headers={"Cache-Control": APP_CACHE})


async def users_app(_request: web.Request) -> web.FileResponse:
    return _index("users")


async def guests_app(_request: web.Request) -> web.FileResponse:
    return _index("guests")


def has_sip_websocket(app: web.Application) -> bool:
    """True once call control has mounted SIP over WebSocket on this server."""
    return any(resource.canonical == SIP_WEBSOCKET_PATH for resource in app.router.resources())


def web_config(app: web.Application) -> dict[str, Any]:
    settings = app[SERVICES].settings
    return {
        "sip_domain": settings.sip.domain,
        "sip_websocket_path": SIP_WEBSOCKET_PATH,
        "sip_websocket_available": has_sip_websocket(app),
        # Always explicit, even empty: sip.js would otherwise ask Google's STUN servers.
        "ice_servers": settings.media.ice_servers,
        "last_n": settings.meetings.last_n,
    }


async def config(request: web.Request) -> web.Response:
    return json_response(web_config(request.app), headers={"Cache-Control": "no-store"})


@web.middleware
async def vendor_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path.startswith("/vendor/"):
        response.headers["Cache-Control"] = VENDOR_CACHE
    elif request.path.startswith(("/users/", "/guests/", "/shared/")):
        response.headers.setdefault("Cache-Control", APP_CACHE)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", users_app)
    app.router.add_get("/users/", users_app)
    app.router.add_get("/guests/", guests_app)
    app.router.add_get(CONFIG_PATH, config)
    for folder in ("users", "guests", "shared"):
        if (WEB_ROOT / folder).is_dir():
            app.router.add_static(f"/{folder}/", WEB_ROOT / folder)
    if SIPJS_ROOT.is_dir():
        app.router.add_static("/vendor/sip.js/", SIPJS_ROOT)
