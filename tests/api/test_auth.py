"""Tokens, ACLs and tenants, as wazo-auth 0.1 answers them."""

from __future__ import annotations

import base64

from tests.conftest import ADMIN_PASSWORD, Api

TOKEN = "/api/auth/0.1/token"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def test_token_carries_wazo_fields(api: Api) -> None:
    data = await api.call("POST", TOKEN, json={"expiration": 120}, headers=basic("admin", ADMIN_PASSWORD))
    token = data["data"]
    assert len(token["token"]) >= 22  # at least 128 random bits in url-safe base64
    assert token["metadata"]["tenant_uuid"] == str(api.services.tenants.master.uuid)  # type: ignore[union-attr]
    assert token["metadata"]["uuid"] == token["auth_id"]
    assert token["acl"] == ["#"]
    checked = await api.call("GET", f"{TOKEN}/{token['token']}")
    assert checked["data"]["metadata"]["uuid"] == token["metadata"]["uuid"]
    head = await api.request("HEAD", f"{TOKEN}/{token['token']}")
    assert head.status == 200


async def test_wrong_password_answers_like_unknown_user(api: Api) -> None:
    wrong = await api.request("POST", TOKEN, headers=basic("admin", "nope"))
    unknown = await api.request("POST", TOKEN, headers=basic("nobody", "nope"))
    assert wrong.status == unknown.status == 401
    wrong_body, unknown_body = await wrong.json(), await unknown.json()
    assert wrong_body["message"] == unknown_body["message"]
    assert wrong_body["error_id"] == unknown_body["error_id"]


async def test_token_request_errors(api: Api) -> None:
    assert (await api.request("POST", TOKEN)).status == 401
    assert (await api.request("POST", TOKEN, headers={"Authorization": "Basic !!!"})).status == 401
    assert (await api.request("POST", TOKEN, headers={"Authorization": "Bearer abc"})).status == 401
    bad = await api.request("POST", TOKEN, json={"expiration": "soon"}, headers=basic("admin", ADMIN_PASSWORD))
    assert bad.status == 400
    assert "expiration" in (await bad.json())["details"]
    too_long = await api.request("POST", TOKEN, json={"expiration": 10**9}, headers=basic("admin", ADMIN_PASSWORD))
    assert too_long.status == 400
    not_json = await api.request("POST", TOKEN, data=b"{nope", headers=basic("admin", ADMIN_PASSWORD))
    assert not_json.status == 400


async def test_revoked_token_is_refused(api: Api) -> None:
    token = await api.login("admin", ADMIN_PASSWORD)
    await api.call("GET", "/api/confd/1.1/users/me", token)
    await api.call("DELETE", f"{TOKEN}/{token}")
    await api.call("GET", "/api/confd/1.1/users/me", token, expect=401)
    await api.call("GET", f"{TOKEN}/{token}", expect=404)


async def test_expired_token_is_refused(api: Api) -> None:
    # 3 s: long enough for the first use to come before the end even on a loaded machine
    token = await api.login("admin", ADMIN_PASSWORD, expiration=3)
    await api.call("GET", "/api/confd/1.1/users/me", token)
    import asyncio

    await asyncio.sleep(3.2)
    await api.call("GET", "/api/confd/1.1/users/me", token, expect=401)


async def test_token_survives_a_cold_cache(api: Api) -> None:
    """Tokens are durable: a restarted server (empty cache) still knows them."""
    token = await api.login("admin", ADMIN_PASSWORD)
    api.services.tokens._cache.clear()
    await api.call("GET", "/api/confd/1.1/users/me", token)


async def test_missing_or_garbage_token(api: Api) -> None:
    body = await api.call("GET", "/api/confd/1.1/users/me/meetings", expect=401)
    assert body["error_id"] == "unauthorized"
    await api.call("GET", "/api/confd/1.1/users/me/meetings", "x" * 300, expect=401)
    await api.call("GET", "/api/confd/1.1/users/me/meetings", "not-a-token", expect=401)


async def test_scope_check(api: Api) -> None:
    _, user_token = await api.create_user("alice")
    await api.call("GET", f"{TOKEN}/{user_token}?scope=confd.users.me.meetings.create")
    await api.call("GET", f"{TOKEN}/{user_token}?scope=confd.meetings.create", expect=403)


async def test_user_acl_is_limited(api: Api) -> None:
    _, token = await api.create_user("alice")
    await api.call("GET", "/api/confd/1.1/meetings", token, expect=403)
    await api.call("GET", "/api/confd/1.1/users", token, expect=403)
    await api.call("POST", "/api/auth/0.1/tenants", token, {"name": "evil"}, expect=403)
    await api.call("GET", "/api/confd/1.1/users/me/meetings", token)


async def test_tenants_master_admin_only(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    listed = await api.call("GET", "/api/auth/0.1/tenants", api.admin_token)
    assert {item["name"] for item in listed["items"]} == {"master", "acme"}
    sub_admin, sub_token = await api.create_user("acme-admin", tenant=tenant, admin=True)
    assert sub_admin["tenant_uuid"] == tenant
    # A sub-tenant admin manages his tenant but may not create tenants.
    await api.call("POST", "/api/auth/0.1/tenants", sub_token, {"name": "nested"}, expect=403)
    listed = await api.call("GET", "/api/auth/0.1/tenants", sub_token)
    assert [item["name"] for item in listed["items"]] == ["acme"]
    bad = await api.call("POST", "/api/auth/0.1/tenants", api.admin_token, {"name": ""}, expect=400)
    assert "name" in bad["details"]


async def test_wazo_tenant_header(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    other = await api.create_tenant("other")
    _, sub_token = await api.create_user("acme-admin", tenant=tenant, admin=True)
    # The master admin acts on a sub-tenant...
    await api.call("GET", "/api/confd/1.1/users", api.admin_token, headers={"Wazo-Tenant": tenant})
    # ...a sub-tenant admin cannot act on a sibling, nor on a malformed tenant.
    await api.call("GET", "/api/confd/1.1/users", sub_token, headers={"Wazo-Tenant": other}, expect=401)
    await api.call("GET", "/api/confd/1.1/users", sub_token, headers={"Wazo-Tenant": "xyz"}, expect=401)
