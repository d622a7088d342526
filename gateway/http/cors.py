"""CORS for the configured web origins (the web apps may live on other hosts than the API)."""

from __future__ import annotations

from aiohttp import web

from gateway.http.errors import Handler

ALLOWED_HEADERS = "Content-Type, X-Auth-Token, Wazo-Tenant, Authorization, Accept"
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"


def cors_middleware(origins: list[str]) -> web.middleware:  # type: ignore[valid-type]
    allowed = frozenset(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin not in allowed or not request.path.startswith("/api/"):
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "Location"
        response.headers["Vary"] = "Origin"
        return response

    return middleware
