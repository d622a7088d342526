"""Serves the one OpenAPI document at each API's conventional path (confd, calld, auth)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from aiohttp import web

DOCUMENT = Path(__file__).parent / "api.yml"
routes = web.RouteTableDef()


@lru_cache(maxsize=1)
def document() -> str:
    return DOCUMENT.read_text()


async def _serve(_request: web.Request) -> web.Response:
    return web.Response(text=document(), content_type="application/yaml")


for _path in ("/api/confd/1.1/api/api.yml", "/api/calld/1.0/api/api.yml", "/api/auth/0.1/api/api.yml"):
    routes.get(_path)(_serve)
