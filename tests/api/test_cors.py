"""CORS: any origin by default, without credentials (Wazo's SDK apps run on other hosts); a list restricts it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, make_settings

GUEST_MEETING = "/api/confd/1.1/guests/me/meetings/{}"
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "x-auth-token"}  # fmt: skip


async def test_any_origin_by_default_without_credentials(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    preflight = await api.request("OPTIONS", GUEST_MEETING.format(meeting["uuid"]), headers=PREFLIGHT)
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Auth-Token" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    answer = await api.request("GET", GUEST_MEETING.format(meeting["uuid"]), headers={"Origin": "https://app.example"})
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers
    created = await api.request(
        "POST", "/api/confd/1.1/users/me/meetings", json={"name": "x"},
        headers={"Origin": "https://other.example", "X-Auth-Token": alice},
    )  # fmt: skip
    assert created.status == 201
    assert created.headers["Access-Control-Allow-Origin"] == "*"
    assert "Location" in created.headers["Access-Control-Expose-Headers"]


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str) -> Any:
    origins = getattr(request, "param", None)
    if origins is None:
        return make_settings(database_url)
    return make_settings(database_url, MEETINGS_HTTP__CORS_ORIGINS=origins)


@pytest.mark.parametrize("settings", ["['https://app.example']"], indirect=True)
async def test_a_list_of_origins_restricts(api: Api) -> None:
    path = GUEST_MEETING.format("00000000-0000-4000-8000-000000000000")
    allowed = await api.request("OPTIONS", path, headers=PREFLIGHT)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert allowed.headers["Vary"] == "Origin"
    other = await api.request("OPTIONS", path, headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("settings", ["[]"], indirect=True)
async def test_an_empty_list_turns_cors_off(api: Api) -> None:
    answer = await api.request("GET", "/api/confd/1.1/guests/me/meetings/x", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers
