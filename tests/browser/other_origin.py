"""Pages served from another origin than the server's (a second local HTTP server, on a port of its own), as apps
built on sip.js or on Wazo's SDK are: they reach the server's APIs and SIP over WebSocket across origins.

It serves the pages a test gives, sip.js as the apps' bundle (/vendor/sip-bundle.js, see gateway/webapps.py) and
Wazo's SDK as bundled at set-up (`make web-deps`) at /wazo-sdk.js.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import webapps

WAZO_SDK_BUNDLE = webapps.SIPJS_BUNDLE.with_name("wazo-sdk.js")


@contextlib.asynccontextmanager
async def other_origin(pages: dict[str, str]) -> AsyncIterator[str]:
    """Serve `pages` ({path: html}) from http://127.0.0.1:<another port>; yields that origin."""
    app = web.Application()
    for path, html in pages.items():

        async def page(_: web.Request, html: str = html) -> web.Response:
            return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

        app.router.add_get(path, page)
    webapps.add_sipjs_routes(app)
    if WAZO_SDK_BUNDLE.exists():

        async def wazo_sdk(_: web.Request) -> web.FileResponse:
            return web.FileResponse(WAZO_SDK_BUNDLE, headers={"Content-Type": "text/javascript"})

        app.router.add_get("/wazo-sdk.js", wazo_sdk)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
