"""/metrics scraped during real calls through the SIP path: the counters move as the calls come and go."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.test_health import METRICS_TOKEN, samples
from tests.conftest import Api, make_settings
from tests.e2e.conftest import Room, guest_credentials
from tests.e2e.sipclient import CallRefused
from tests.waiting import until


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(database_url, MEETINGS_METRICS__TOKEN=METRICS_TOKEN, MEETINGS_MEETINGS__MAX_PARTICIPANTS="2")


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await api.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200
    return samples(await answer.text())


async def test_joins_refusals_rooms_and_participants(api: Api, room: Room) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    before = await scrape(api)
    assert before[("meetings_rooms", ())] == 0

    members = [await room.member(guest_credentials(meeting), 440.0, colour) for colour in ("red", "green", "blue")]
    await members[0].join("meeting-guest")
    await members[1].join("meeting-guest")
    with pytest.raises(CallRefused):
        await members[2].join("meeting-guest")
    found = await scrape(api)
    assert found[("meetings_joins_total", (("outcome", "joined"),))] == 2
    assert found[("meetings_joins_total", (("outcome", "full"),))] == 1
    assert found[("meetings_invite_answer_seconds_count", ())] == 2
    assert found[("meetings_rooms", ())] == 1
    assert found[("meetings_participants", (("kind", "webrtc"),))] == 2
    assert found[("meetings_participants", (("kind", "phone"),))] == 0

    first = members[0]
    assert first.call is not None
    await first.sip.bye(first.call)
    await until(lambda: api.services.conferences.count(uuid.UUID(meeting["uuid"])) == 1, 5, "one to leave")
    found = await scrape(api)
    assert found[("meetings_participants", (("kind", "webrtc"),))] == 1
    # the SIP side: three REGISTERs and INVITEs (each challenged once, then answered), one BYE, the refusal
    assert found[("meetings_sip_requests_total", (("method", "REGISTER"),))] >= 6
    assert found[("meetings_sip_requests_total", (("method", "INVITE"),))] >= 6
    assert found[("meetings_sip_responses_total", (("class", "4xx"), ("method", "INVITE")))] >= 4  # 401s and the 486
    assert found[("meetings_sip_responses_total", (("class", "2xx"), ("method", "BYE")))] == 1
    assert found[("meetings_sip_registrations", ())] == 3


async def test_the_live_view_for_master_administrators(api: Api, room: Room) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    member = await room.member(guest_credentials(meeting), 440.0, "red")
    await member.join("meeting-guest")
    live = await api.call("GET", "/api/calld/1.0/live", api.admin_token)
    assert live["interval"] > 0 and live["history"], live
    (shown,) = [r for r in live["rooms"] if r["meeting_uuid"] == meeting["uuid"]]
    (person,) = shown["participants"]
    assert person["kind"] == "webrtc" and person["call_id"] == member.call.call_id  # type: ignore[union-attr]
    latest = live["history"][-1]
    assert {"cpu_percent", "memory_bytes", "loop_lag_seconds", "rooms", "participants", "joins"} <= latest.keys()
    assert latest["memory_bytes"] > 0
    # not for users, nor for a sub-tenant's administrator
    assert (await api.request("GET", "/api/calld/1.0/live", headers={"X-Auth-Token": alice})).status == 403
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    assert (await api.request("GET", "/api/calld/1.0/live", headers={"X-Auth-Token": acme_admin})).status == 403


async def test_the_grafana_dashboard_asks_only_for_metrics_the_server_exposes(api: Api, room: Room) -> None:
    """Every series the shipped dashboard queries exists in /metrics (a renamed metric would blank a panel)."""
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana" / "meetings-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    wanted = {name for expr in exprs for name in re.findall(r"\b((?:meetings|process)_[a-z_]+)\b", expr)}
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    member = await room.member(guest_credentials(meeting), 440.0, "red")
    await member.join("meeting-guest")
    await until(lambda: bool(member.messages("ConfbridgeWelcome")), 5, "the welcome, after the slots' re-INVITE")
    exposed = {name for name, _labels in await scrape(api)}
    assert wanted and not wanted - exposed, sorted(wanted - exposed)
