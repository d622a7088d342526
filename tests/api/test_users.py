"""Users: tenant admins manage them; each has a SIP line only he (or an admin) can read."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.confd.users.service import LastAdministrator
from gateway.http.lists import ListParams
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


async def test_last_master_administrator_stays(api: Api) -> None:
    me = await api.call("GET", f"{USERS}/me", api.admin_token)
    refused = await api.call("DELETE", f"{USERS}/{me['uuid']}", api.admin_token, expect=400)
    assert refused["error_id"] == "last-administrator"
    assert "last administrator of the master tenant" in refused["message"]
    assert "admin" in refused["details"], refused
    demoted = await api.call("PUT", f"{USERS}/{me['uuid']}", api.admin_token, {"admin": False}, expect=400)
    assert demoted["error_id"] == "last-administrator"
    # Nothing changed: the admin still administers, with the same token.
    assert (await api.call("GET", f"{USERS}/me", api.admin_token))["admin"] is True
    # With a second administrator, either may go; then the other is the last one.
    second, second_token = await api.create_user("second-admin", admin=True)
    await api.call("PUT", f"{USERS}/{me['uuid']}", second_token, {"admin": False}, expect=204)
    await api.call("DELETE", f"{USERS}/{second['uuid']}", second_token, expect=400)
    await api.call("PUT", f"{USERS}/{second['uuid']}", second_token, {"admin": False}, expect=400)
    await api.call("PUT", f"{USERS}/{second['uuid']}", second_token, {"admin": True, "lastname": "Root"}, expect=204)
    await api.call("DELETE", f"{USERS}/{me['uuid']}", second_token, expect=204)


async def test_sub_tenant_administrators_and_plain_users_may_go(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    acme_admin, acme_token = await api.create_user("acme-admin", tenant=tenant, admin=True)
    await api.call("PUT", f"{USERS}/{acme_admin['uuid']}", acme_token, {"admin": False}, expect=204)
    await api.call("DELETE", f"{USERS}/{acme_admin['uuid']}", api.admin_token, expect=204)
    alice, _ = await api.create_user("alice")
    await api.call("DELETE", f"{USERS}/{alice['uuid']}", api.admin_token, expect=204)


async def test_concurrent_removals_keep_one_master_administrator(api: Api) -> None:
    """Two administrators removed at once, each while the other still exists: one removal must wait and fail."""
    users = api.services.users
    me = await api.call("GET", f"{USERS}/me", api.admin_token)
    second, _ = await api.create_user("second-admin", admin=True)
    first_record, second_record = await users.get(uuid.UUID(me["uuid"])), await users.get(uuid.UUID(second["uuid"]))
    for _round in range(3):
        outcomes = await asyncio.gather(
            users.delete(first_record), users.update(second_record, {"admin": False}), return_exceptions=True
        )
        assert sum(isinstance(outcome, LastAdministrator) for outcome in outcomes) == 1, outcomes
        assert not [
            outcome
            for outcome in outcomes
            if isinstance(outcome, Exception) and not isinstance(outcome, LastAdministrator)
        ]
        _, remaining = await users.search({first_record.tenant_uuid}, ListParams())
        assert [user.admin for user in remaining].count(True) == 1
        # Put both back as administrators for the next round.
        if await users.find_by_username("admin") is None:
            first_record = await users.create(first_record.tenant_uuid, "admin", "pw", admin=True)
        await users.update(first_record, {"admin": True})
        await users.update(second_record, {"admin": True})


async def test_user_cannot_grant_himself_admin_rights(api: Api) -> None:
    alice, token = await api.create_user("alice")
    refused = await api.call("PUT", f"{USERS}/{alice['uuid']}", token, {"admin": True}, expect=403)
    assert "admin" in refused["message"]
    # Sending back what he read (admin: false) is no change, and allowed.
    await api.call("PUT", f"{USERS}/{alice['uuid']}", token, {"admin": False, "lastname": "Liddell"}, expect=204)
    assert (await api.call("GET", f"{USERS}/me", token))["admin"] is False


async def test_users_me_is_not_a_user_uuid(api: Api) -> None:
    for method in ("PUT", "DELETE"):
        response = await api.request(method, f"{USERS}/me", api.admin_token, json={"admin": False})
        assert response.status == 405, await response.text()
        assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
        assert (await response.json())["error_id"] == "method-not-allowed"
