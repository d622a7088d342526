"""calld: participants through the conference registry, kicks, and the guests' full/not-full status."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.calld.conferences import Participant
from tests.conftest import Api

CALLD = "/api/calld/1.0"


def seat(api: Api, meeting: dict[str, Any], name: str, hangups: list[str], user: str | None = None) -> Participant:
    async def hangup(reason: str) -> None:
        hangups.append(f"{name}:{reason}")

    participant = Participant(
        id=uuid.uuid4().hex,
        meeting_uuid=uuid.UUID(meeting["uuid"]),
        tenant_uuid=uuid.UUID(meeting["tenant_uuid"]),
        caller_id_name=name,
        caller_id_number="1000",
        call_id=f"{name}@test",
        user_uuid=uuid.UUID(user) if user else None,
        hangup=hangup,
    )
    api.services.conferences.add(participant, tuple(uuid.UUID(o) for o in meeting["owner_uuids"]))
    return participant


async def test_participants_and_kick(api: Api) -> None:
    alice_user, alice = await api.create_user("alice")
    _, bob = await api.create_user("bob")
    meeting = await api.create_meeting(alice)
    hangups: list[str] = []
    events: list[str] = []
    api.services.bus.subscribe(lambda event: events.append(event.name))
    guest = seat(api, meeting, "Guest", hangups)
    seat(api, meeting, "Alice", hangups, user=alice_user["uuid"])
    listed = await api.call("GET", f"{CALLD}/users/me/meetings/{meeting['uuid']}/participants", alice)
    assert listed["total"] == 2
    assert {item["caller_id_name"] for item in listed["items"]} == {"Guest", "Alice"}
    # Wazo's fields, and ours beyond them: the call quality (none for a seat the SFU does not carry)
    assert {"id", "caller_id_name", "caller_id_number", "call_id", "user_uuid", "call_quality"} == set(
        listed["items"][0]
    )
    assert listed["items"][0]["call_quality"] is None
    as_admin = await api.call("GET", f"{CALLD}/meetings/{meeting['uuid']}/participants", api.admin_token)
    assert as_admin["total"] == 2
    # Bob is neither owner nor present.
    await api.call("GET", f"{CALLD}/users/me/meetings/{meeting['uuid']}/participants", bob, expect=404)
    await api.call("DELETE", f"{CALLD}/users/me/meetings/{meeting['uuid']}/participants/{guest.id}", bob, expect=404)
    await api.call("DELETE", f"{CALLD}/users/me/meetings/{meeting['uuid']}/participants/{guest.id}", alice, expect=204)
    assert hangups == ["Guest:kicked"]
    assert "meeting_participant_joined" in events and "meeting_participant_left" in events
    assert "meeting_user_participant_left" in events
    left = await api.call("GET", f"{CALLD}/meetings/{meeting['uuid']}/participants", api.admin_token)
    assert [item["caller_id_name"] for item in left["items"]] == ["Alice"]
    await api.call("DELETE", f"{CALLD}/meetings/{meeting['uuid']}/participants/{guest.id}", api.admin_token, expect=404)
    await api.call(
        "DELETE", f"{CALLD}/meetings/{meeting['uuid']}/participants/bad%7Bid%7D", api.admin_token, expect=404
    )


async def test_deleting_a_meeting_hangs_everyone_up(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    hangups: list[str] = []
    seat(api, meeting, "One", hangups)
    seat(api, meeting, "Two", hangups)
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", alice, expect=204)
    import asyncio

    for _ in range(50):
        if len(hangups) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(hangups) == ["One:meeting deleted", "Two:meeting deleted"]
    assert api.services.conferences.count(uuid.UUID(meeting["uuid"])) == 0


async def test_status_full_follows_the_cap(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    status = f"{CALLD}/guests/me/meetings/{meeting['uuid']}/status"
    assert await api.call("GET", status) == {"full": False}
    await api.call(
        "PUT", "/api/confd/1.1/asterisk/confbridge/wazo_default_bridge", api.admin_token, {"max_members": "2"},
        expect=204,
    )  # fmt: skip
    hangups: list[str] = []
    seat(api, meeting, "One", hangups)
    assert await api.call("GET", status) == {"full": False}
    seat(api, meeting, "Two", hangups)
    assert await api.call("GET", status) == {"full": True}
    await api.call("GET", f"{CALLD}/guests/me/meetings/{uuid.uuid4()}/status", expect=404)
    await api.call("GET", f"{CALLD}/guests/me/meetings/nope/status", expect=404)


async def test_participants_of_unknown_or_foreign_meeting(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    await api.call("GET", f"{CALLD}/meetings/{meeting['uuid']}/participants", acme_admin, expect=404)
    await api.call("GET", f"{CALLD}/meetings/{uuid.uuid4()}/participants", api.admin_token, expect=404)
    await api.call("GET", f"{CALLD}/meetings/{meeting['uuid']}/participants", expect=401)
    await api.call("GET", f"{CALLD}/meetings/{meeting['uuid']}/participants", alice, expect=403)
