"""The lobby: guests ask to enter, owners accept or reject, at most 128 per meeting."""

from __future__ import annotations

import base64
import uuid

from gateway.confd.authorizations.service import MAX_PER_MEETING
from tests.conftest import Api

MY = "/api/confd/1.1/users/me/meetings"


def lobby(guest: uuid.UUID, meeting: dict[str, str]) -> str:
    return f"/api/confd/1.1/guests/{guest}/meetings/{meeting['uuid']}/authorizations"


async def test_guest_waits_owner_accepts(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice, require_authorization=True)
    assert meeting["guest_sip_authorization"] is None
    guest = uuid.uuid4()
    asked = await api.call("POST", lobby(guest, meeting), json={"guest_name": "Gus"}, expect=201)
    assert asked["status"] == "pending" and asked["guest_name"] == "Gus"
    waiting = await api.call("GET", f"{MY}/{meeting['uuid']}/authorizations", alice)
    assert waiting["total"] == 1 and waiting["items"][0]["uuid"] == asked["uuid"]
    accepted = await api.call("PUT", f"{MY}/{meeting['uuid']}/authorizations/{asked['uuid']}/accept", alice)
    assert accepted["status"] == "accepted"
    polled = await api.call("GET", f"{lobby(guest, meeting)}/{asked['uuid']}")
    assert polled["status"] == "accepted"
    username, _ = base64.b64decode(polled["guest_sip_authorization"]).decode().split(":", 1)
    assert username == f"wazo-meeting-{meeting['uuid']}-guest"


async def test_owner_rejects_and_deletes(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice, require_authorization=True)
    guest = uuid.uuid4()
    asked = await api.call("POST", lobby(guest, meeting), json={"guest_name": "Gus"}, expect=201)
    await api.call("PUT", f"{MY}/{meeting['uuid']}/authorizations/{asked['uuid']}/reject", alice)
    polled = await api.call("GET", f"{lobby(guest, meeting)}/{asked['uuid']}")
    assert polled["status"] == "rejected" and polled["guest_sip_authorization"] is None
    await api.call("DELETE", f"{MY}/{meeting['uuid']}/authorizations/{asked['uuid']}", alice, expect=204)
    await api.call("GET", f"{lobby(guest, meeting)}/{asked['uuid']}", expect=404)


async def test_open_meeting_accepts_at_once(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    asked = await api.call("POST", lobby(uuid.uuid4(), meeting), json={"guest_name": "Gus"}, expect=201)
    assert asked["status"] == "accepted" and asked["guest_sip_authorization"] == meeting["guest_sip_authorization"]


async def test_only_the_guest_polls_and_only_owners_decide(api: Api) -> None:
    _, alice = await api.create_user("alice")
    _, bob = await api.create_user("bob")
    meeting = await api.create_meeting(alice, require_authorization=True)
    guest = uuid.uuid4()
    asked = await api.call("POST", lobby(guest, meeting), json={"guest_name": "Gus"}, expect=201)
    await api.call("GET", f"{lobby(uuid.uuid4(), meeting)}/{asked['uuid']}", expect=404)
    await api.call("GET", f"{MY}/{meeting['uuid']}/authorizations", bob, expect=404)
    await api.call("PUT", f"{MY}/{meeting['uuid']}/authorizations/{asked['uuid']}/accept", bob, expect=404)
    polled = await api.call("GET", f"{lobby(guest, meeting)}/{asked['uuid']}")
    assert polled["status"] == "pending"


async def test_lobby_bad_input(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice, require_authorization=True)
    guest = uuid.uuid4()
    for body, field in (
        ({}, "guest_name"),
        ({"guest_name": 3}, "guest_name"),
        ({"guest_name": "x" * 600}, "guest_name"),
    ):
        answer = await api.call("POST", lobby(guest, meeting), json=body, expect=400)
        assert field in answer["details"]
    await api.call(
        "POST",
        f"/api/confd/1.1/guests/nope/meetings/{meeting['uuid']}/authorizations",
        json={"guest_name": "x"},
        expect=404,
    )
    await api.call("POST", lobby(guest, {"uuid": str(uuid.uuid4())}), json={"guest_name": "x"}, expect=404)
    await api.call("PUT", f"{MY}/{meeting['uuid']}/authorizations/{uuid.uuid4()}/accept", alice, expect=404)


async def test_at_most_128_per_meeting(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice, require_authorization=True)
    for index in range(MAX_PER_MEETING):
        await api.call("POST", lobby(uuid.uuid4(), meeting), json={"guest_name": f"g{index}"}, expect=201)
    answer = await api.call("POST", lobby(uuid.uuid4(), meeting), json={"guest_name": "one too many"}, expect=400)
    assert "128" in answer["message"]
