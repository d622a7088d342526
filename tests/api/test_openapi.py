"""The OpenAPI document stays true: every API route is documented, every documented operation exists, and the
document served at the three conventional URLs is the same valid OpenAPI 3.0 document."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import schemathesis
import yaml
from aiohttp import web

from gateway import webapps
from gateway.app import build_services, create_app
from gateway.bootstrap import bootstrap
from gateway.confd.ingresses.schema import HTTP_URI_PATTERN
from gateway.confd.users.schema import USERNAME_PATTERN
from gateway.http.lists import MAX_NATURAL
from gateway.openapi.resource import DOCUMENT
from tests.conftest import ADMIN_PASSWORD, Api, make_settings

SERVED_AT = ("/api/confd/1.1/api/api.yml", "/api/calld/1.0/api/api.yml", "/api/auth/0.1/api/api.yml")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
WEB_APP_HANDLERS = {webapps.users_app, webapps.guests_app, webapps.sipjs_bundle}


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def _template(canonical: str) -> str:
    """aiohttp's `/x/{name:regex}` as OpenAPI's `/x/{name}`."""
    return re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", canonical)


def _app_operations(app: web.Application) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(the API's own routes, without the HEAD aiohttp adds to each GET; every route, HEAD included)."""
    own: set[tuple[str, str]] = set()
    every: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource) or route.handler in WEB_APP_HANDLERS:
            continue
        operation = (route.method.upper(), _template(resource.canonical))
        every.add(operation)
        if route.method.upper() != "HEAD":
            own.add(operation)
    return own, every


def _documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def _resolve(document: dict[str, Any], item: Any) -> Any:
    while isinstance(item, dict) and "$ref" in item:
        reference = item["$ref"]
        assert reference.startswith("#/"), reference
        target: Any = document
        for part in reference[2:].split("/"):
            assert part in target, f"unresolvable $ref {reference}"
            target = target[part]
        item = target
    return item


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


@pytest.fixture
def app(tmp_path: Any) -> web.Application:
    return create_app(make_settings(f"sqlite:///{tmp_path}/meetings.db"))


def test_every_route_is_documented_and_every_documented_operation_exists(app: web.Application) -> None:
    own, every = _app_operations(app)
    documented = _documented_operations(_document())
    assert len(own) > 40
    assert not own - documented, f"routes missing from gateway/openapi/api.yml: {sorted(own - documented)}"
    assert not documented - every, f"documented operations the server lacks: {sorted(documented - every)}"


def test_document_is_valid_openapi_3_0() -> None:
    document = _document()
    assert str(document["openapi"]).startswith("3.0.")
    # Validates against the OpenAPI 3.0 JSON schema that schemathesis ships (openapi-spec-validator is not installed).
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()
    for result in schema.get_all_operations():
        result.ok()  # raises on an operation schemathesis cannot use (a bad $ref, a bad parameter)
    for reference in _references(document):
        _resolve(document, {"$ref": reference})


def test_operations_are_complete() -> None:
    """Path parameters match the template, operation ids are unique, every operation answers something it names,
    protected operations answer 401, and 4xx/5xx bodies are the error object."""
    document = _document()
    operation_ids: list[str] = []
    for path, item in document["paths"].items():
        placeholders = set(re.findall(r"\{([^}]+)\}", path))
        for method in (m for m in item if m in METHODS):
            operation = item[method]
            operation_ids.append(operation["operationId"])
            parameters = [
                _resolve(document, p) for p in [*item.get("parameters", []), *operation.get("parameters", [])]
            ]
            in_path = {p["name"] for p in parameters if p["in"] == "path"}
            assert in_path == placeholders, f"{method.upper()} {path}: path parameters {in_path} != {placeholders}"
            assert all(p["required"] for p in parameters if p["in"] == "path")
            responses = operation["responses"]
            assert any(code.startswith("2") or code == "101" for code in responses), f"{method.upper()} {path}"
            secured = operation.get("security", document["security"]) != []
            if secured:
                assert "401" in responses, f"{method.upper()} {path} takes a token but does not document 401"
            for code, response in responses.items():
                if code[0] in "45" and method != "head":
                    schema = _resolve(document, _resolve(document, response)["content"]["application/json"]["schema"])
                    assert schema is document["components"]["schemas"]["Error"], f"{method.upper()} {path} {code}"
    assert len(operation_ids) == len(set(operation_ids))
    # The meeting creations answer 503 while no ingress applies; token creation uses HTTP Basic.
    assert "503" in document["paths"]["/api/confd/1.1/users/me/meetings"]["post"]["responses"]
    assert "503" in document["paths"]["/api/confd/1.1/meetings"]["post"]["responses"]
    assert document["paths"]["/api/auth/0.1/token"]["post"]["security"] == [{"basic": []}]


async def test_served_document(api: Api) -> None:
    expected = _document()
    for path in SERVED_AT:
        response = await api.request("GET", path)
        assert response.status == 200, path
        assert response.content_type == "application/yaml"
        served = yaml.safe_load(await response.text())
        assert served == expected, path
        schemathesis.openapi.from_dict(served).validate()


async def test_served_document_states_the_limits_the_server_enforces(tmp_path: Any, aiohttp_client: Any) -> None:
    """The token lifetime maximum is a setting: the served document states this server's, and it holds."""
    settings = make_settings(
        f"sqlite:///{tmp_path}/meetings.db",
        MEETINGS_AUTH__MAX_TOKEN_EXPIRATION="600",
        MEETINGS_AUTH__DEFAULT_TOKEN_EXPIRATION="300",
    )
    services = build_services(settings)
    api = Api(await aiohttp_client(create_app(settings, services)), services)
    await bootstrap(services, "admin", ADMIN_PASSWORD)
    served = yaml.safe_load(await (await api.request("GET", SERVED_AT[0])).text())
    schemas = served["components"]["schemas"]
    assert schemas["TokenRequest"]["properties"]["expiration"]["maximum"] == 600
    schemathesis.openapi.from_dict(served).validate()
    # Everything else is the file's.
    schemas["TokenRequest"]["properties"]["expiration"]["maximum"] = _document()["components"]["schemas"][
        "TokenRequest"
    ]["properties"]["expiration"]["maximum"]
    assert served == _document()
    await api.login("admin", ADMIN_PASSWORD, expiration=600)
    basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    refused = await api.call(
        "POST", "/api/auth/0.1/token", json={"expiration": 601}, headers={"Authorization": f"Basic {basic}"}, expect=400
    )
    assert "expiration" in refused["details"]
    # limit and offset: the document's maximum is the server's.
    maximum = served["components"]["parameters"]["Limit"]["schema"]["maximum"]
    assert maximum == served["components"]["parameters"]["Offset"]["schema"]["maximum"] == MAX_NATURAL
    token = await api.login("admin", ADMIN_PASSWORD)
    await api.call("GET", f"/api/confd/1.1/users?limit={maximum}&offset={maximum}", token)
    await api.call("GET", f"/api/confd/1.1/users?limit={maximum + 1}", token, expect=400)


def test_document_patterns_are_the_servers() -> None:
    """Where the server checks a string with a regular expression, the document states that very expression."""
    schemas = _document()["components"]["schemas"]
    assert schemas["UserCreate"]["properties"]["username"]["pattern"] == USERNAME_PATTERN
    assert schemas["UserUpdate"]["properties"]["username"]["pattern"] == USERNAME_PATTERN
    assert schemas["IngressBody"]["properties"]["uri"]["pattern"] == HTTP_URI_PATTERN
