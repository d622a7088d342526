"""Health for load balancers and Kubernetes (/livez, /readyz), Wazo's status endpoints, and /metrics access."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import HEALTH, METRICS_PORT
from tests.conftest import Api, make_settings

METRICS_TOKEN = "metrics-token-of-32-characters!!"


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(
        database_url,
        MEETINGS_METRICS__TOKEN=METRICS_TOKEN,
        MEETINGS_METRICS__PORT="0",
        MEETINGS_HEALTH__LOOP_STALL_SECONDS="0.5",
    )


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_live_and_ready(api: Api) -> None:
    assert (await api.call("GET", "/livez")) == {"status": "ok"}
    ready = await api.call("GET", "/readyz")
    assert ready == {"status": "ok", "checks": {"database": True, "event_loop": True, "accepting": True}}


async def test_not_ready_while_draining(api: Api) -> None:
    api.client.app[HEALTH].draining = True
    answer = await api.request("GET", "/readyz")
    assert answer.status == 503
    assert (await answer.json())["details"]["checks"]["accepting"] is False
    assert (await api.request("GET", "/livez")).status == 200


async def test_not_ready_after_the_event_loop_stalled(api: Api) -> None:
    time.sleep(0.8)  # noqa: ASYNC251 (blocks the server's loop on purpose, as a long synchronous job would)
    answer = await api.request("GET", "/readyz")
    assert answer.status == 503
    assert (await answer.json())["details"]["checks"]["event_loop"] is False


async def test_wazo_status_endpoints(api: Api) -> None:
    for path in ("/api/auth/0.1/status", "/api/confd/1.1/status"):
        assert await api.call("GET", path, api.admin_token) == {
            "rest_api": {"status": "ok"},
            "database": {"status": "ok"},
        }
    calld = await api.call("GET", "/api/calld/1.0/status", api.admin_token)
    assert calld == {"rest_api": {"status": "ok"}, "accepting_calls": {"status": "ok"}, "sip": {"status": "ok"}}
    assert (await api.request("GET", "/api/calld/1.0/status")).status == 401
    _, alice = await api.create_user("alice")
    assert (await api.request("GET", "/api/calld/1.0/status", headers={"X-Auth-Token": alice})).status == 403


async def test_metrics_behind_the_token_and_on_their_own_listener(api: Api) -> None:
    assert (await api.request("GET", "/metrics")).status == 404
    wrong = {"Authorization": "Bearer not-the-token-at-all-000000000"}
    assert (await api.request("GET", "/metrics", headers=wrong)).status == 404
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    await api.call("GET", f"/api/confd/1.1/guests/me/meetings/{meeting['uuid']}")

    answer = await api.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    found = samples(await answer.text())
    # by route template, never by raw path (a meeting UUID per series would grow without end)
    route = (("method", "GET"), ("route", "/api/confd/1.1/guests/me/meetings/{meeting_uuid}"), ("status", "2xx"))
    assert found[("meetings_api_request_duration_seconds_count", route)] == 1
    assert not any(meeting["uuid"] in str(labels) for _, labels in found)
    assert found[("meetings_db_query_duration_seconds_count", ())] > 0
    assert found[("process_cpu_seconds_total", ())] > 0
    assert found[("meetings_participants", (("kind", "webrtc"),))] == 0

    port = api.client.app[METRICS_PORT]
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as own:
        assert own.status == 200
        assert "meetings_rooms" in await own.text()


def test_the_systemd_unit_waits_longer_than_the_drain() -> None:
    """systemd kills what outlives TimeoutStopSec: the unit must leave the default drain its full time."""
    from pathlib import Path

    from gateway.config import DrainSettings

    unit = (Path(__file__).parents[2] / "deploy" / "meetings.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["KillSignal"] == "SIGTERM"
    assert float(lines["TimeoutStopSec"]) > DrainSettings().timeout_seconds
