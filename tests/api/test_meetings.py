"""Meetings: the owner's story, admins' tenant-wide view, guests' read, and every bad input."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.conftest import Api

MY = "/api/confd/1.1/users/me/meetings"
ADMIN = "/api/confd/1.1/meetings"
GUEST = "/api/confd/1.1/guests/me/meetings"


async def test_owner_creates_and_shares(api: Api) -> None:
    user, token = await api.create_user("alice")
    response = await api.request("POST", MY, token, {"name": "Weekly sync"})
    assert response.status == 201
    meeting = await response.json()
    assert response.headers["Location"].endswith(f"/api/confd/1.1/meetings/{meeting['uuid']}")
    assert meeting["owner_uuids"] == [user["uuid"]]
    assert meeting["ingress_http_uri"] == "https://meetings.example.com"
    assert meeting["persistent"] is False and meeting["require_authorization"] is False
    assert meeting["exten"].startswith("*41") and len(meeting["exten"]) == 9 and meeting["exten"][3:].isdigit()
    username, password = base64.b64decode(meeting["guest_sip_authorization"]).decode().split(":", 1)
    assert username == f"wazo-meeting-{meeting['uuid']}-guest"
    assert len(password) >= 16
    assert meeting["creation_time"].endswith("+00:00")
    assert meeting["expire_time"] is not None
    listed = await api.call("GET", MY, token)
    assert listed["total"] == 1 and listed["items"][0]["uuid"] == meeting["uuid"]
    guest_view = await api.call("GET", f"{GUEST}/{meeting['uuid']}")
    assert guest_view["name"] == "Weekly sync"
    assert guest_view["guest_sip_authorization"] == meeting["guest_sip_authorization"]
    assert "owner_uuids" not in guest_view


async def test_extens_are_unique(api: Api) -> None:
    _, token = await api.create_user("alice")
    extens = {(await api.create_meeting(token, name=f"m{i}"))["exten"] for i in range(25)}
    assert len(extens) == 25


async def test_user_list_shows_only_owned(api: Api) -> None:
    _, alice = await api.create_user("alice")
    bob_user, bob = await api.create_user("bob")
    await api.create_meeting(alice, name="alice's")
    await api.create_meeting(bob, name="bob's")
    shared = await api.create_meeting(alice, name="shared", owner_uuids=[bob_user["uuid"]])
    bobs = await api.call("GET", f"{MY}?order=name", bob)
    assert [item["name"] for item in bobs["items"]] == ["bob's", "shared"]
    await api.call("PUT", f"{MY}/{shared['uuid']}", bob, {"name": "renamed by co-owner"}, expect=204)


async def test_non_owner_reads_without_credentials_and_cannot_change(api: Api) -> None:
    _, alice = await api.create_user("alice")
    _, bob = await api.create_user("bob")
    meeting = await api.create_meeting(alice)
    seen = await api.call("GET", f"{MY}/{meeting['uuid']}", bob)
    assert seen["name"] == meeting["name"]
    assert seen["guest_sip_authorization"] is None
    await api.call("PUT", f"{MY}/{meeting['uuid']}", bob, {"name": "mine now"}, expect=404)
    await api.call("DELETE", f"{MY}/{meeting['uuid']}", bob, expect=404)
    assert (await api.call("GET", f"{MY}/{meeting['uuid']}", alice))["name"] == meeting["name"]


async def test_other_tenant_cannot_see(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    _, acme_user = await api.create_user("acme-user", tenant=tenant)
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    await api.call("GET", f"{MY}/{meeting['uuid']}", acme_user, expect=404)
    await api.call("GET", f"{ADMIN}/{meeting['uuid']}", acme_admin, expect=404)
    await api.call("DELETE", f"{ADMIN}/{meeting['uuid']}", acme_admin, expect=404)
    assert (await api.call("GET", ADMIN, acme_admin))["total"] == 0
    # Owners must be users of the meeting's tenant.
    alice_uuid = (await api.call("GET", "/api/confd/1.1/users/me", alice))["uuid"]
    answer = await api.call("POST", MY, acme_user, {"name": "x", "owner_uuids": [alice_uuid]}, expect=400)
    assert "owner_uuids" in answer["details"]


async def test_admin_manages_tenant_meetings(api: Api) -> None:
    alice_user, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice, name="Standup")
    created = await api.call(
        "POST", ADMIN, api.admin_token, {"name": "Board", "owner_uuids": [alice_user["uuid"]], "persistent": True},
        expect=201,
    )  # fmt: skip
    assert created["expire_time"] is None
    listed = await api.call("GET", f"{ADMIN}?search=stand", api.admin_token)
    assert [item["uuid"] for item in listed["items"]] == [meeting["uuid"]]
    page = await api.call("GET", f"{ADMIN}?order=name&direction=asc&limit=1&offset=1", api.admin_token)
    assert page["total"] == 2 and [item["name"] for item in page["items"]] == ["Standup"]
    await api.call("PUT", f"{ADMIN}/{meeting['uuid']}", api.admin_token, {"require_authorization": True}, expect=204)
    updated = await api.call("GET", f"{ADMIN}/{meeting['uuid']}", api.admin_token)
    assert updated["require_authorization"] is True and updated["guest_sip_authorization"] is None
    await api.call("DELETE", f"{ADMIN}/{meeting['uuid']}", api.admin_token, expect=204)
    await api.call("GET", f"{GUEST}/{meeting['uuid']}", expect=404)
    # A sub-tenant's meetings show to the master admin with recurse.
    tenant = await api.create_tenant("acme")
    _, acme_user = await api.create_user("acme-user", tenant=tenant)
    await api.create_meeting(acme_user, name="Acme")
    assert (await api.call("GET", ADMIN, api.admin_token))["total"] == 1
    assert (await api.call("GET", f"{ADMIN}?recurse=true", api.admin_token))["total"] == 2
    in_acme = await api.call("GET", ADMIN, api.admin_token, headers={"Wazo-Tenant": tenant})
    assert [item["name"] for item in in_acme["items"]] == ["Acme"]


async def test_put_accepts_what_get_returned(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    meeting["name"] = "Renamed"
    await api.call("PUT", f"{MY}/{meeting['uuid']}", alice, meeting, expect=204)
    again = await api.call("GET", f"{MY}/{meeting['uuid']}", alice)
    assert again["name"] == "Renamed" and again["exten"] == meeting["exten"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": None}, "name"),
        ({"name": 42}, "name"),
        ({"name": {"a": 1}}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 513}, "name"),
        ({"name": "ok", "persistent": "true"}, "persistent"),
        ({"name": "ok", "require_authorization": 1}, "require_authorization"),
        ({"name": "ok", "owner_uuids": "abc"}, "owner_uuids"),
        ({"name": "ok", "owner_uuids": ["not-a-uuid"]}, "owner_uuids.0"),
        ({"name": "ok", "owner_uuids": [str(uuid.uuid4())]}, "owner_uuids"),
    ],
)
async def test_bad_meeting_bodies(api: Api, body: dict[str, object], field: str) -> None:
    _, alice = await api.create_user("alice")
    answer = await api.call("POST", MY, alice, body, expect=400)
    assert field in answer["details"], answer
    assert (await api.call("GET", MY, alice))["total"] == 0


async def test_bad_bodies_and_paths(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    assert (await api.request("POST", MY, alice, data=b"{broken")).status == 400
    assert (await api.request("POST", MY, alice, json=["a", "list"])).status == 400
    assert (await api.request("PUT", f"{MY}/{meeting['uuid']}", alice, {"name": 5})).status == 400
    await api.call("GET", f"{MY}/not-a-uuid", alice, expect=404)
    await api.call("GET", f"{MY}/{uuid.uuid4()}", alice, expect=404)
    await api.call("GET", f"{GUEST}/not-a-uuid", expect=404)
    for params in (
        "limit=-1", "limit=x", "offset=abc", "order=password", "direction=up", "recurse=maybe",
        "limit=11992062570025723904", "limit=%C2%B2", "offset=99999999999", "search=a%00",
    ):  # fmt: skip
        answer = await api.call("GET", f"{ADMIN}?{params}", api.admin_token, expect=400)
        assert params.split("=")[0] in answer["details"]
    for body in ({"name": "a\u0000b"}, {"name": "ok", "owner_uuids": ["\u0000"]}):
        answer = await api.call("POST", MY, alice, body, expect=400)
        assert "NUL" in answer["message"]
    # Unknown fields are ignored, as the document says, whatever they hold: nothing of them is stored.
    ignored = await api.call("POST", MY, alice, {"name": "ok", "name\u0000": "x", "x": ["\u0000"]}, expect=201)
    assert ignored["name"] == "ok"
    too_big = await api.request("POST", MY, alice, data=b'{"name": "' + b"x" * 2_000_000 + b'"}')
    assert too_big.status == 413


async def test_no_ingress_is_503(api: Api) -> None:
    master = api.services.tenants.master
    assert master is not None
    ingress = api.services.ingresses.of_tenant(master.uuid)
    assert ingress is not None
    await api.call("DELETE", f"/api/confd/1.1/ingresses/http/{ingress.uuid}", api.admin_token, expect=204)
    _, alice = await api.create_user("alice")
    answer = await api.call("POST", MY, alice, {"name": "x"}, expect=503)
    assert "ingress" in answer["message"].lower()


async def test_turning_authorization_off_accepts_waiting_guests(api: Api) -> None:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice, require_authorization=True)
    guest = uuid.uuid4()
    lobby = f"/api/confd/1.1/guests/{guest}/meetings/{meeting['uuid']}/authorizations"
    pending = await api.call("POST", lobby, json={"guest_name": "Guest"}, expect=201)
    assert pending["status"] == "pending" and pending["guest_sip_authorization"] is None
    await api.call("PUT", f"{MY}/{meeting['uuid']}", alice, {"require_authorization": False}, expect=204)
    polled = await api.call("GET", f"{lobby}/{pending['uuid']}")
    assert polled["status"] == "accepted" and polled["guest_sip_authorization"]
