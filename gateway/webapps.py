"""The two browser apps (users at /, guests at /guests/) and sip.js from web/node_modules, as static files."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.http.errors import Handler

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
SIPJS_ROOT = WEB_ROOT / "node_modules" / "sip.js" / "lib"
# sip.js is hundreds of small ES modules: let browsers keep them, so a guest's page loads fast the second time.
VENDOR_CACHE = "public, max-age=86400"


def _index(folder: str) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / folder / "index.html", headers={"Cache-Control": "no-cache"})


async def users_app(_request: web.Request) -> web.FileResponse:
    return _index("users")


async def guests_app(_request: web.Request) -> web.FileResponse:
    return _index("guests")


@web.middleware
async def vendor_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path.startswith("/vendor/"):
        response.headers["Cache-Control"] = VENDOR_CACHE
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", users_app)
    app.router.add_get("/users/", users_app)
    app.router.add_get("/guests/", guests_app)
    for folder in ("users", "guests", "shared"):
        if (WEB_ROOT / folder).is_dir():
            app.router.add_static(f"/{folder}/", WEB_ROOT / folder)
    if SIPJS_ROOT.is_dir():
        app.router.add_static("/vendor/sip.js/", SIPJS_ROOT)
