"""Users: tenant admins manage them; each has a SIP line only he (or an admin) can read."""

from __future__ import annotations

import pytest

from tests.conftest import Api

USERS = "/api/confd/1.1/users"


async def test_user_reads_own_sip_account(api: Api) -> None:
    user, token = await api.create_user("alice")
    me = await api.call("GET", f"{USERS}/me", token)
    assert me["uuid"] == user["uuid"]
    assert me["sip"]["username"] and len(me["sip"]["password"]) >= 16
    assert me["sip"]["domain"] == api.services.settings.sip.domain


async def test_user_cannot_read_another_users_sip_password(api: Api) -> None:
    alice, _ = await api.create_user("alice")
    _, bob_token = await api.create_user("bob")
    await api.call("GET", f"{USERS}/{alice['uuid']}", bob_token, expect=403)
    as_admin = await api.call("GET", f"{USERS}/{alice['uuid']}", api.admin_token)
    assert as_admin["sip"]["password"]


async def test_user_crud_and_lists(api: Api) -> None:
    for name in ("carol", "alice", "bob"):
        await api.create_user(name)
    listed = await api.call("GET", f"{USERS}?order=username&direction=desc&limit=2", api.admin_token)
    assert listed["total"] == 4
    assert [item["username"] for item in listed["items"]] == ["carol", "bob"]
    found = await api.call("GET", f"{USERS}?search=ALI", api.admin_token)
    assert [item["username"] for item in found["items"]] == ["alice"]
    alice = found["items"][0]
    await api.call("PUT", f"{USERS}/{alice['uuid']}", api.admin_token, {"lastname": "Liddell"}, expect=204)
    assert (await api.call("GET", f"{USERS}/{alice['uuid']}", api.admin_token))["lastname"] == "Liddell"
    await api.call("DELETE", f"{USERS}/{alice['uuid']}", api.admin_token, expect=204)
    await api.call("GET", f"{USERS}/{alice['uuid']}", api.admin_token, expect=404)


async def test_password_change_and_deleted_user_token(api: Api) -> None:
    alice, token = await api.create_user("alice", "first-password")
    await api.call("PUT", f"{USERS}/{alice['uuid']}", api.admin_token, {"password": "second-password"}, expect=204)
    await api.login("alice", "second-password")
    await api.call("DELETE", f"{USERS}/{alice['uuid']}", api.admin_token, expect=204)
    await api.call("GET", f"{USERS}/me", token, expect=401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "x"}, "username"),
        ({"username": "bob"}, "password"),
        ({"username": 12, "password": "x"}, "username"),
        ({"username": "a" * 300, "password": "x"}, "username"),
        ({"username": "with space", "password": "x"}, "username"),
        ({"username": "bob", "password": "x", "admin": "yes"}, "admin"),
        ({"username": "bob", "password": "x", "firstname": ["x"]}, "firstname"),
    ],
)
async def test_bad_user_bodies(api: Api, body: dict[str, object], field: str) -> None:
    answer = await api.call("POST", USERS, api.admin_token, body, expect=400)
    assert field in answer["details"], answer


async def test_duplicate_username(api: Api) -> None:
    await api.create_user("alice")
    answer = await api.call("POST", USERS, api.admin_token, {"username": "alice", "password": "x"}, expect=400)
    assert "username" in answer["details"]


async def test_other_tenant_users_are_invisible(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    alice, _ = await api.create_user("alice")
    await api.call("GET", f"{USERS}/{alice['uuid']}", acme_admin, expect=404)
    await api.call("DELETE", f"{USERS}/{alice['uuid']}", acme_admin, expect=404)
    listed = await api.call("GET", USERS, acme_admin)
    assert [item["username"] for item in listed["items"]] == ["acme-admin"]
    # The master admin sees both with recurse.
    everyone = await api.call("GET", f"{USERS}?recurse=true", api.admin_token)
    assert {item["username"] for item in everyone["items"]} >= {"alice", "acme-admin"}
