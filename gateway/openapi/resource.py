"""Serves the one OpenAPI document at each API's conventional path (confd, calld, auth).

The file states the default token lifetime maximum; the served document states this server's own setting, so a
client (or a fuzzer) reading it knows the limit the server enforces.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from aiohttp import web

from gateway.services import SERVICES

DOCUMENT = Path(__file__).parent / "api.yml"
routes = web.RouteTableDef()


@lru_cache(maxsize=1)
def document() -> str:
    return DOCUMENT.read_text()


@lru_cache(maxsize=4)
def served_document(max_token_expiration: int) -> str:
    """The document with the configured maximum token lifetime; the file itself when that is the default."""
    text = document()
    loaded = yaml.safe_load(text)
    expiration = loaded["components"]["schemas"]["TokenRequest"]["properties"]["expiration"]
    if expiration["maximum"] == max_token_expiration:
        return text
    expiration["maximum"] = max_token_expiration
    return str(yaml.safe_dump(loaded, sort_keys=False, allow_unicode=True, width=120))


async def _serve(request: web.Request) -> web.Response:
    settings = request.app[SERVICES].settings
    return web.Response(text=served_document(settings.auth.max_token_expiration), content_type="application/yaml")


for _path in ("/api/confd/1.1/api/api.yml", "/api/calld/1.0/api/api.yml", "/api/auth/0.1/api/api.yml"):
    routes.get(_path)(_serve)
