"""The websocketd event stream, its scoping, and meetings expiring at the second they are due."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from sqlalchemy import update

from gateway.app import build_services, create_app
from gateway.bootstrap import bootstrap
from gateway.db.models import Meeting
from gateway.services import Services
from tests.conftest import ADMIN_PASSWORD, Api, make_settings
from tests.waiting import until


async def events_socket(api: Api, token: str, *names: str) -> ClientWebSocketResponse:
    socket = await api.client.ws_connect(f"/api/websocketd/?token={token}&version=2")
    assert json.loads((await socket.receive(timeout=5)).data)["op"] == "init"
    for name in names:
        await socket.send_json({"op": "subscribe", "data": {"event_name": name}})
        assert json.loads((await socket.receive(timeout=5)).data) == {"op": "subscribe", "code": 0, "msg": ""}
    await socket.send_json({"op": "start"})
    assert json.loads((await socket.receive(timeout=5)).data)["op"] == "start"
    return socket


async def next_event(socket: ClientWebSocketResponse, wait: float = 5) -> dict[str, Any]:
    message = json.loads((await socket.receive(timeout=wait)).data)
    assert message["op"] == "event", message
    event: dict[str, Any] = message["data"]
    return event


async def nothing_more(socket: ClientWebSocketResponse) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await socket.receive(timeout=0.3)


async def test_admin_receives_tenant_events(api: Api) -> None:
    socket = await events_socket(api, api.admin_token, "meeting_created", "meeting_progress", "meeting_deleted")
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    created = await next_event(socket)
    assert created["name"] == "meeting_created" and created["data"]["uuid"] == meeting["uuid"]
    assert created["tenant_uuid"] == meeting["tenant_uuid"] and created["origin_uuid"]
    progress = await next_event(socket)
    assert progress["name"] == "meeting_progress" and progress["data"]["status"] == "ready"
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", alice, expect=204)
    deleted = await next_event(socket)
    assert deleted["name"] == "meeting_deleted" and deleted["data"]["uuid"] == meeting["uuid"]
    await socket.close()


async def test_user_events_only_reach_that_user(api: Api) -> None:
    _, alice = await api.create_user("alice")
    _, bob = await api.create_user("bob")
    names = ("meeting_user_progress", "meeting_user_guest_authorization_created", "meeting_created")
    alice_socket = await events_socket(api, alice, *names)
    bob_socket = await events_socket(api, bob, *names)
    meeting = await api.create_meeting(alice, require_authorization=True)
    progress = await next_event(alice_socket)
    assert progress["name"] == "meeting_user_progress" and progress["data"]["uuid"] == meeting["uuid"]
    lobby = f"/api/confd/1.1/guests/{uuid.uuid4()}/meetings/{meeting['uuid']}/authorizations"
    await api.call("POST", lobby, json={"guest_name": "Gus"}, expect=201)
    asked = await next_event(alice_socket)
    assert asked["name"] == "meeting_user_guest_authorization_created"
    assert asked["data"]["guest_name"] == "Gus"
    # Bob neither owns the meeting nor administers the tenant: he hears nothing, and no credentials reach him.
    await nothing_more(bob_socket)
    await nothing_more(alice_socket)  # users do not get the admins' tenant events
    await alice_socket.close()
    await bob_socket.close()


async def test_other_tenant_admin_hears_nothing(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    socket = await events_socket(api, acme_admin, "*")
    _, alice = await api.create_user("alice")
    await api.create_meeting(alice)
    await nothing_more(socket)
    await socket.close()


async def test_bad_tokens_and_messages(api: Api) -> None:
    socket = await api.client.ws_connect("/api/websocketd/?token=nope")
    message = await socket.receive(timeout=5)
    assert socket.close_code == 4003 or message.data == 4003
    socket = await events_socket(api, api.admin_token)
    await socket.send_str("{not json")
    assert json.loads((await socket.receive(timeout=5)).data)["code"] == 400
    await socket.send_json({"op": "ping", "data": {"payload": "hi"}})
    assert json.loads((await socket.receive(timeout=5)).data)["data"] == {"payload": "hi"}
    await socket.close()


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(database_url, MEETINGS_MEETINGS__EXPIRY_SECONDS="2")


async def test_meeting_expires_on_time_and_persistent_stops_the_clock(api: Api) -> None:
    _, alice = await api.create_user("alice")
    deleted: list[tuple[str, float]] = []
    api.services.bus.subscribe(lambda event: deleted.append((event.data["uuid"], time.time())), "meeting_deleted")
    doomed = await api.create_meeting(alice, name="doomed")
    kept = await api.create_meeting(alice, name="kept")
    await api.call("PUT", f"/api/confd/1.1/users/me/meetings/{kept['uuid']}", alice, {"persistent": True}, expect=204)
    await asyncio.sleep(3.5)
    assert [uuid_ for uuid_, _ in deleted] == [doomed["uuid"]]
    due = datetime.fromisoformat(doomed["creation_time"]).timestamp() + 2
    assert abs(deleted[0][1] - due) < 1.1  # creation_time is stored to the second
    await api.call("GET", f"/api/confd/1.1/guests/me/meetings/{doomed['uuid']}", expect=404)
    await api.call("GET", f"/api/confd/1.1/guests/me/meetings/{kept['uuid']}")


async def test_meetings_due_while_down_go_at_start(database_url: str, aiohttp_client: Any) -> None:
    long_lived = make_settings(database_url)
    services = build_services(long_lived)
    client = await aiohttp_client(create_app(long_lived, services))
    await bootstrap(services, "admin", ADMIN_PASSWORD)
    api = Api(client, services)
    api.admin_token = await api.login("admin", ADMIN_PASSWORD)
    meeting = await api.create_meeting(api.admin_token)
    await client.close()

    short_lived = make_settings(database_url, MEETINGS_MEETINGS__EXPIRY_SECONDS="1")
    await asyncio.sleep(1.1)
    restarted = build_services(short_lived)
    client = await aiohttp_client(create_app(short_lived, restarted))
    for _ in range(50):
        if await restarted.meetings.find(uuid.UUID(meeting["uuid"])) is None:
            break
        await asyncio.sleep(0.05)
    assert await restarted.meetings.find(uuid.UUID(meeting["uuid"])) is None
    await client.close()


async def _backdate(services: Services, meeting_uuid: str, hours: int) -> None:
    """Make a meeting look created long ago (older than any expiry delay here) by rewriting its stored row."""
    creation = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)
    async with services.db.write() as connection:
        await connection.execute(
            update(Meeting).where(Meeting.uuid == uuid.UUID(meeting_uuid)).values(creation_time=creation)
        )


async def _deleted_at(deleted: dict[str, float], meeting_uuid: str) -> float:
    await until(lambda: meeting_uuid in deleted, 15, "the meeting to expire")
    return deleted[meeting_uuid]


async def test_old_meeting_made_non_persistent_gets_the_whole_delay(api: Api) -> None:
    _, alice = await api.create_user("alice")
    deleted: dict[str, float] = {}
    api.services.bus.subscribe(lambda event: deleted.setdefault(event.data["uuid"], time.time()), "meeting_deleted")
    meeting = await api.create_meeting(alice, persistent=True)
    path = f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}"
    await _backdate(api.services, meeting["uuid"], hours=1)
    made_non_persistent = time.time()
    await api.call("PUT", path, alice, {"persistent": False}, expect=204)
    answered = time.time()  # the change happened in between (a loaded machine may take a while to answer)
    read = await api.call("GET", path, alice)
    expire_time = datetime.fromisoformat(read["expire_time"]).timestamp()
    # The 2 s run from the change (stored to the second), not from the creation an hour ago.
    assert made_non_persistent + 1 <= expire_time <= answered + 2
    gone = await _deleted_at(deleted, meeting["uuid"])
    assert gone >= made_non_persistent + 1
    assert abs(gone - expire_time) < 0.5
    # A meeting that was never persistent keeps counting from its creation, whatever PUT says again.
    young = await api.create_meeting(alice)
    young_path = f"/api/confd/1.1/users/me/meetings/{young['uuid']}"
    await api.call("PUT", young_path, alice, {"persistent": False, "name": "Renamed"}, expect=204)
    assert (await api.call("GET", young_path, alice))["expire_time"] == young["expire_time"]


async def test_start_up_counts_from_when_the_meeting_became_non_persistent(
    database_url: str, aiohttp_client: Any
) -> None:
    settings = make_settings(database_url, MEETINGS_MEETINGS__EXPIRY_SECONDS="3")
    services = build_services(settings)
    client = await aiohttp_client(create_app(settings, services))
    await bootstrap(services, "admin", ADMIN_PASSWORD)
    api = Api(client, services)
    api.admin_token = await api.login("admin", ADMIN_PASSWORD)
    meeting = await api.create_meeting(api.admin_token, persistent=True)
    await _backdate(services, meeting["uuid"], hours=1)
    made_non_persistent = time.time()
    await api.call(
        "PUT", f"/api/confd/1.1/meetings/{meeting['uuid']}", api.admin_token, {"persistent": False}, expect=204
    )
    await client.close()

    restarted = build_services(settings)
    deleted: dict[str, float] = {}
    restarted.bus.subscribe(lambda event: deleted.setdefault(event.data["uuid"], time.time()), "meeting_deleted")
    client = await aiohttp_client(create_app(settings, restarted))
    # Counted from creation (an hour ago) the meeting would go at start-up; counted from the change, 3 s after it.
    gone = await _deleted_at(deleted, meeting["uuid"])
    assert gone >= made_non_persistent + 2, gone - made_non_persistent
    await client.close()
