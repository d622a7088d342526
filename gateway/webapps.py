"""The two browser apps (users at /, guests at /guests/) and sip.js from web/node_modules, as static files,
plus the small JSON document the apps read to reach SIP over WebSocket (domain, path, ICE servers)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.http.errors import Handler, json_response
from gateway.services import SERVICES
from gateway.turn import turn_ice_server

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
SIPJS_ROOT = WEB_ROOT / "node_modules" / "sip.js" / "lib"
# What the apps use of sip.js in one ES module, built at set-up (`make web-deps`: `npm run build` in web/, esbuild
# from web/sip-bundle.js). The pages import the bare specifier "sip.js", mapped by their import map to
# SIPJS_BUNDLE_URL with the bundle's digest appended, so browsers may keep it for good.
SIPJS_BUNDLE = WEB_ROOT / "node_modules" / ".cache" / "meetings-web" / "sip-bundle.js"
SIPJS_BUNDLE_URL = "/vendor/sip-bundle.js"
# Without the bundle (npm ci run by hand, no build): the same names re-exported from sip.js's own ES modules, about
# 190 requests instead of one (about 2 s more on a guest's first load).
SIPJS_FALLBACK = (
    'export { Inviter, Registerer, RegistererState, SessionState, UserAgent } from "/vendor/sip.js/api/index.js";\n'
    'export { SessionDescriptionHandler } from "/vendor/sip.js/platform/web/session-description-handler/'
    'session-description-handler.js";\n'
)
# sip.js's own modules (the fallback): let browsers keep them a day, so a guest's page loads fast the second time.
VENDOR_CACHE = "public, max-age=86400"
# The bundle at a URL carrying its digest: it never changes.
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
# The apps' own files change with each deployment: browsers revalidate them (cheap 304s) on every load.
APP_CACHE = "no-cache"
SIP_WEBSOCKET_PATH = "/api/asterisk/ws"
CONFIG_PATH = "/api/meetings-web/config.json"


def bundle_digest() -> str | None:
    """A digest of the built sip.js bundle (size and modification time: cheap, and enough to change with each build),
    or None without a bundle."""
    try:
        stat = SIPJS_BUNDLE.stat()
    except OSError:
        return None
    return hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def sipjs_url() -> str:
    """Where the pages' import map sends "sip.js": the bundle at a versioned URL, or the unversioned fallback."""
    digest = bundle_digest()
    return f"{SIPJS_BUNDLE_URL}?v={digest}" if digest else SIPJS_BUNDLE_URL


def _index(folder: str) -> web.Response:
    # The import map and the modulepreload name the bundle at its current URL (index.html says SIPJS_BUNDLE_URL).
    html = (WEB_ROOT / folder / "index.html").read_text(encoding="utf-8")
    html = html.replace(f'"{SIPJS_BUNDLE_URL}"', f'"{sipjs_url()}"')
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": APP_CACHE})


async def users_app(_request: web.Request) -> web.Response:
    return _index("users")


async def guests_app(_request: web.Request) -> web.Response:
    return _index("guests")


async def sipjs_bundle(request: web.Request) -> web.StreamResponse:
    """The bundle (long-lived when asked for at its current digest), or the fallback module without one."""
    digest = bundle_digest()
    if digest is None:
        return web.Response(text=SIPJS_FALLBACK, content_type="text/javascript", headers={"Cache-Control": "no-cache"})
    cache = IMMUTABLE_CACHE if request.query.get("v") == digest else "no-cache"
    # FileResponse sends sip-bundle.js.gz instead when it exists and the browser accepts gzip.
    return web.FileResponse(SIPJS_BUNDLE, headers={"Cache-Control": cache, "Content-Type": "text/javascript"})


def has_sip_websocket(app: web.Application) -> bool:
    """True once call control has mounted SIP over WebSocket on this server."""
    return any(resource.canonical == SIP_WEBSOCKET_PATH for resource in app.router.resources())


def web_config(app: web.Application) -> dict[str, Any]:
    settings = app[SERVICES].settings
    ice_servers = list(settings.media.ice_servers)
    turn = turn_ice_server(settings.turn)  # minted for each answer (no-store), valid turn.credential_ttl_seconds
    if turn:
        ice_servers.append(turn)
    return {
        "sip_domain": settings.sip.domain,
        "sip_websocket_path": SIP_WEBSOCKET_PATH,
        "sip_websocket_available": has_sip_websocket(app),
        # Always explicit, even empty: sip.js would otherwise ask Google's STUN servers.
        "ice_servers": ice_servers,
        "last_n": settings.meetings.last_n,
    }


async def config(request: web.Request) -> web.Response:
    return json_response(web_config(request.app), headers={"Cache-Control": "no-store"})


@web.middleware
async def vendor_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path.startswith("/vendor/"):
        response.headers.setdefault("Cache-Control", VENDOR_CACHE)
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
    add_sipjs_routes(app)


def add_sipjs_routes(app: web.Application) -> None:
    """sip.js for the pages: the bundle (or its fallback) at SIPJS_BUNDLE_URL, and sip.js's own modules."""
    app.router.add_get(SIPJS_BUNDLE_URL, sipjs_bundle)
    if SIPJS_ROOT.is_dir():
        app.router.add_static("/vendor/sip.js/", SIPJS_ROOT)
