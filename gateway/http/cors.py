"""CORS: the web apps, and apps built on Wazo's JavaScript SDK, may live on other hosts than the API.

Any origin by default, as Wazo's services answer: tokens travel in the X-Auth-Token header, never in cookies, so a
page on another origin gets nothing it did not already hold (no `Access-Control-Allow-Credentials`, ever). An
operator may restrict the origins to a list (`http.cors_origins`), or turn CORS off with an empty list.
"""

from __future__ import annotations

from aiohttp import web

from gateway.http.errors import Handler

ANY_ORIGIN = "*"
ALLOWED_HEADERS = "Content-Type, X-Auth-Token, Wazo-Tenant, Authorization, Accept"
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"


def cors_middleware(origins: list[str]) -> web.middleware:  # type: ignore[valid-type]
    any_origin = origins == [ANY_ORIGIN]
    allowed = frozenset(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith("/api/") or not (any_origin or origin in allowed):
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = ANY_ORIGIN if any_origin else origin
        response.headers["Access-Control-Expose-Headers"] = "Location"
        if not any_origin:
            response.headers["Vary"] = "Origin"
        return response

    return middleware
