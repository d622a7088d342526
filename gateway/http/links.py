"""Wazo-style `links`: absolute URLs to a resource, built from the request's own base."""

from __future__ import annotations

from aiohttp import web


def link(request: web.Request, rel: str, path: str) -> list[dict[str, str]]:
    base = f"{request.scheme}://{request.host}"
    return [{"rel": rel, "href": f"{base}{path}"}]
