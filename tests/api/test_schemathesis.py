"""Schemathesis against the served OpenAPI document, on the live test server (SQLite and PostgreSQL).

Every documented operation gets schemathesis's coverage cases (each parameter's and field's boundaries and
types, missing and extra data, every method the document does not declare for its path) and then random cases,
with positive data (fits the document) and negative data (does not), with the master admin's token. Checks:
never a 5xx, status codes, content types, headers and bodies as documented, negative data rejected with a 4xx,
positive data never refused as malformed (a 400 only for what depends on the server's state, which no schema can
say: a taken username, an unknown owner), and an undeclared method answered 405 with Allow.

Random UUIDs only ever reach 404s, so for about half of the positive cases the path parameters (and the
Wazo-Tenant header) are swapped for resources that exist: a meeting with a pending authorization, a user, a
sub-tenant, the master tenant's HTTP ingress, a spare token. After a case changes or deletes one of them, it is
put back, so every case starts from the same world. Schemathesis itself is synchronous (requests): it runs in a
worker thread while the server keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoverageScenario
from schemathesis.specs.openapi import checks as openapi_checks

from gateway.config import Settings
from tests.conftest import ADMIN_PASSWORD, Api, make_settings

DOCUMENT = "/api/confd/1.1/api/api.yml"
# Examples per operation and generation mode: about 50 operations x 2 modes x this, in well under 90 s per database.
MAX_EXAMPLES = 20
# Logging in hashes a password (argon2): fewer examples where every case does that.
SLOW_OPERATIONS = {
    "POST /api/auth/0.1/token": 8,
    "POST /api/confd/1.1/users": 10,
    "PUT /api/confd/1.1/users/{user_uuid}": 10,
}
CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# 400s a request that fits the document may get, because of what exists on the server (no schema can say it),
# or because of a rule the document can only state in prose (confbridge option names: OpenAPI 3.0 has no
# propertyNames). Field named in `details` -> what its message says.
STATE_DEPENDENT_REFUSALS = {
    "username": "is already taken",
    "owner_uuids": "no such user in this tenant",
    "tenant_uuid": "already has an HTTP ingress",
    "parent_uuid": "no such tenant",
    "admin": "last administrator of the master tenant",
}
CONFBRIDGE_OPTION_NAME_RULES = ("option names are non-empty strings", "must not contain the NUL character")


def _refusal_is_state_dependent(case: schemathesis.Case, field_name: str, message: str) -> bool:
    expected = STATE_DEPENDENT_REFUSALS.get(field_name)
    if expected is not None and expected in message:
        return True
    if "/asterisk/confbridge/" in case.path:
        name = field_name.removeprefix("options.")
        return name not in _documented_options(case) and any(rule in message for rule in CONFBRIDGE_OPTION_NAME_RULES)
    return False


def _documented_options(case: schemathesis.Case) -> set[str]:
    profile = case.path.rsplit("/", 1)[-1]
    schemas = case.operation.schema.raw_schema["components"]["schemas"]
    name = "ConfbridgeBridgeOptions" if profile == "wazo_default_bridge" else "ConfbridgeUserOptions"
    return set(schemas[name]["properties"])


@schemathesis.check
def positive_data_not_refused(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A request that fits the document is not a 400, except for what depends on the server's state."""
    if case.meta is None or response.status_code != 400:
        return None
    if "101" in case.operation.definition.raw.get("responses", {}):
        return None  # a WebSocket upgrade: a plain request, however valid its parameters, is no handshake
    components = case.meta.components
    if any(info.mode != GenerationMode.POSITIVE for info in components.values()):
        return None
    if case.meta.generation.mode != GenerationMode.POSITIVE:
        return None
    try:
        details = response.json().get("details") or {}
    except ValueError:
        details = {}
    refused = {name: str((problem or {}).get("message", "")) for name, problem in details.items()}
    unexplained = {name: text for name, text in refused.items() if not _refusal_is_state_dependent(case, name, text)}
    if unexplained or not refused:
        raise AssertionError(f"Valid data refused with 400: {response.text[:300]}")
    return None


def _checks() -> list[Any]:
    return [
        schemathesis.checks.not_a_server_error,
        openapi_checks.status_code_conformance,
        openapi_checks.content_type_conformance,
        openapi_checks.response_headers_conformance,
        openapi_checks.response_schema_conformance,
        openapi_checks.negative_data_rejection,
        openapi_checks.unsupported_method,
        positive_data_not_refused,
    ]


@dataclass
class World:
    """The resources positive cases aim at, kept in place between cases (plain HTTP from the worker thread)."""

    base_url: str
    admin_token: str
    admin_uuid: str = ""
    master_tenant: str = ""
    sub_tenant: str = ""
    meeting: str = ""
    guest: str = field(default_factory=lambda: str(uuid.uuid4()))
    authorization: str = ""
    user: str = ""
    ingress: str = ""
    spare_token: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, json: Any = None, expect: int = 200, **kwargs: Any) -> Any:
        headers = {"X-Auth-Token": self.admin_token, **kwargs.pop("headers", {})}
        response = self.session.request(method, self.base_url + path, json=json, headers=headers, timeout=30, **kwargs)
        assert response.status_code == expect, f"set-up {method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def build(self) -> None:
        me = self.call("GET", "/api/confd/1.1/users/me")
        self.admin_uuid, self.master_tenant = me["uuid"], me["tenant_uuid"]
        self.sub_tenant = self.call("POST", "/api/auth/0.1/tenants", {"name": "fuzzed-sub-tenant"})["uuid"]
        self.reset_ingress()
        self.reset_meeting()
        self.reset_user()
        self.reset_token()

    def reset_ingress(self) -> None:
        found = self.call("GET", "/api/confd/1.1/ingresses/http")["items"]
        if found:
            self.ingress = found[0]["uuid"]
            self.call(
                "PUT", f"/api/confd/1.1/ingresses/http/{self.ingress}", {"uri": "https://meetings.example.com"}, 204
            )
        else:
            body = {"uri": "https://meetings.example.com"}
            self.ingress = self.call("POST", "/api/confd/1.1/ingresses/http", body, 201)["uuid"]

    def reset_meeting(self) -> None:
        state = {"name": "Fuzzed", "owner_uuids": [self.admin_uuid], "persistent": True, "require_authorization": True}
        response = self.session.put(
            f"{self.base_url}/api/confd/1.1/meetings/{self.meeting or uuid.uuid4()}",
            json=state,
            headers={"X-Auth-Token": self.admin_token},
            timeout=30,
        )
        if response.status_code != 204:
            self.meeting = self.call("POST", "/api/confd/1.1/meetings", state, 201)["uuid"]
        self.reset_authorization()

    def reset_authorization(self) -> None:
        path = f"/api/confd/1.1/guests/{self.guest}/meetings/{self.meeting}/authorizations"
        self.authorization = self.call("POST", path, {"guest_name": "Guest"}, 201)["uuid"]

    def reset_user(self) -> None:
        name = f"fuzzed-{uuid.uuid4().hex[:8]}"
        body = {"username": name, "password": "fuzzed-password"}
        self.user = self.call("POST", "/api/confd/1.1/users", body, 201)["uuid"]

    def reset_token(self) -> None:
        basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        self.spare_token = self.call("POST", "/api/auth/0.1/token", headers={"Authorization": f"Basic {basic}"})[
            "data"
        ]["token"]

    # --- aiming cases at these resources

    def aim(self, case: schemathesis.Case) -> None:
        components = case.meta.components if case.meta else {}

        def positive(location: ParameterLocation) -> bool:
            info = components.get(location)
            return info is None or info.mode == GenerationMode.POSITIVE

        if positive(ParameterLocation.PATH):
            known = {
                "meeting_uuid": self.meeting,
                "authorization_uuid": self.authorization,
                "guest_uuid": self.guest,
                "user_uuid": self.user,
                "tenant_uuid": self.sub_tenant,
                "ingress_uuid": self.ingress,
                "token": self.spare_token,
            }
            for name in case.path_parameters:
                if name in known:
                    case.path_parameters[name] = known[name]
        if positive(ParameterLocation.HEADER) and case.headers and "Wazo-Tenant" in case.headers:
            value = str(case.headers["Wazo-Tenant"])
            if CANONICAL_UUID.match(value):
                case.headers["Wazo-Tenant"] = self.master_tenant if value < "8" else self.sub_tenant

    def restore(self, case: schemathesis.Case, status: int) -> None:
        """Put back whatever a successful change touched."""
        if case.method.upper() not in ("PUT", "DELETE", "POST") or not 200 <= status < 300:
            return
        path = case.path
        if path.startswith("/api/auth/0.1/token/"):
            self.reset_token()
        elif "/authorizations/" in path and case.method.upper() == "DELETE":
            self.reset_authorization()
        elif path.startswith("/api/confd/1.1/ingresses/http/"):
            self.reset_ingress()
        elif path.startswith("/api/confd/1.1/users/{user_uuid}"):
            if case.method.upper() == "DELETE":
                self.reset_user()
        elif path in ("/api/confd/1.1/meetings/{meeting_uuid}", "/api/confd/1.1/users/me/meetings/{meeting_uuid}"):
            self.reset_meeting()


def _can_be_negated(document: dict[str, Any], path: str, method: str) -> bool:
    """Whether the operation has anything to send wrong: a body, or a parameter constrained beyond "a string".

    Without it, hypothesis spends seconds looking for negative cases that cannot exist (a token path, the
    websocketd query), and finds none.
    """

    def resolve(item: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in item:
            target: Any = document
            for part in item["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            item = target
        return item

    path_item = document["paths"][path]
    definition = path_item[method.lower()]
    if "requestBody" in definition:
        return True
    for parameter in [*path_item.get("parameters", []), *definition.get("parameters", [])]:
        schema = resolve(resolve(parameter)["schema"])
        if set(schema) - {"type", "description", "minLength", "default"} or schema.get("type", "string") != "string":
            return True
    return False


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    coverage_requests: int = 0
    statuses: dict[str, set[int]] = field(default_factory=dict)


def _cover(
    schema: Any, operation: Any, world: World, headers: dict[str, str], checks: list[Any], report: Report
) -> None:
    """Schemathesis's coverage cases (boundaries, formats, missing and extra data, undeclared methods), half the
    positive ones aimed at real resources. Wrong JSON types are left to the random negative cases, which send
    them too: they are half of the coverage cases (about 1000), and against the code before issue 12's fixes they
    found nothing the other cases did not."""
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    failed: set[str] = set()
    cases = schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=generation)
    for index, case in enumerate(cases):
        scenario = getattr(case.meta.phase.data, "scenario", None) if case.meta else None
        if scenario == CoverageScenario.INCORRECT_TYPE:
            continue
        if index % 2:
            world.aim(case)
        response = case.call(base_url=world.base_url, headers=headers, timeout=30)
        report.requests += 1
        report.coverage_requests += 1
        report.statuses[operation.label].add(response.status_code)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as failure:
            described = getattr(case.meta.phase.data, "description", "") if case.meta else ""
            if described not in failed:  # one report per kind of coverage case
                failed.add(described)
                report.failures.append(f"{operation.label} (coverage: {described}):\n{failure}")
        finally:
            world.restore(case, response.status_code)


def fuzz(world: World, max_examples: int, only: Callable[[str], bool] = lambda _label: True) -> Report:
    """Every documented operation, both generation modes; failures are collected, not raised, so all get a go."""
    # Unknown query parameters are ignored, as by Wazo: do not send them as "invalid" data.
    config = schemathesis.Config.from_dict(
        {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}
    )
    schema = schemathesis.openapi.from_url(world.base_url + DOCUMENT, config=config)
    document = schema.raw_schema
    world.build()
    report = Report()
    basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    headers = {"X-Auth-Token": world.admin_token, "Authorization": f"Basic {basic}"}
    checks = _checks()
    for result in schema.get_all_operations():
        operation = result.ok()
        if not only(operation.label):
            continue
        report.statuses[operation.label] = set()
        _cover(schema, operation, world, headers, checks, report)
        modes = [GenerationMode.POSITIVE]
        if _can_be_negated(document, operation.path, operation.method):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @hypothesis.settings(
                max_examples=SLOW_OPERATIONS.get(operation.label, max_examples),
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode), aimed=st.booleans())
            def run(case: schemathesis.Case, aimed: bool) -> None:
                # A blank body is no body (POST /token's is optional), not the "invalid JSON" schemathesis means.
                hypothesis.assume(not (isinstance(case.body, (str, bytes)) and not case.body.strip()))
                if aimed:
                    world.aim(case)
                response = case.call(base_url=world.base_url, headers=headers, timeout=30)
                report.requests += 1
                report.statuses[case.operation.label].add(response.status_code)
                try:
                    case.validate_response(response, checks=checks, headers=headers)
                finally:
                    world.restore(case, response.status_code)

            try:
                run()
            except FailureGroup as failure:
                report.failures.append(f"{operation.label} ({mode.value}):\n{failure}")
            except hypothesis.errors.Unsatisfiable:
                # Nothing to negate (no parameters, no body): there is no negative case to send.
                if mode == GenerationMode.POSITIVE:
                    report.failures.append(f"{operation.label}: no positive case could be generated")
    return report


@pytest.fixture
def settings(database_url: str) -> Settings:
    # /readyz answers 503 after a second of event-loop lag, which a loaded machine (CI beside other work) can cause:
    # true, but not what this test checks, and schemathesis counts any 5xx as a server error.
    return make_settings(database_url, MEETINGS_HEALTH__LOOP_STALL_SECONDS="60")


async def test_schemathesis_finds_nothing(api: Api) -> None:
    base_url = str(api.client.make_url("")).rstrip("/")
    world = World(base_url, api.admin_token)
    started = time.monotonic()
    report = await asyncio.to_thread(fuzz, world, MAX_EXAMPLES)
    elapsed = time.monotonic() - started
    assert not report.failures, f"{len(report.failures)} operations failed:\n\n" + "\n\n".join(report.failures)
    # The run reached every operation and more than 404s: the aimed cases found real resources.
    # (Schemathesis leaves out the document's own URL, GET /api/confd/1.1/api/api.yml.)
    assert len(report.statuses) >= 49, sorted(report.statuses)
    reached = {label for label, statuses in report.statuses.items() if statuses & {200, 201, 204}}
    assert len(reached) >= 40, sorted(set(report.statuses) - reached)
    print(f"schemathesis: {report.requests} requests ({report.coverage_requests} coverage cases) in {elapsed:.1f} s")
