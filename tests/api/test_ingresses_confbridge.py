"""HTTP ingresses (one per tenant, master fallback) and the two confbridge option sets."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Api

INGRESSES = "/api/confd/1.1/ingresses/http"
BRIDGE = "/api/confd/1.1/asterisk/confbridge/wazo_default_bridge"
USER = "/api/confd/1.1/asterisk/confbridge/wazo_default_user"


async def test_one_ingress_per_tenant_with_master_fallback(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    assert (await api.call("GET", INGRESSES, acme_admin))["total"] == 0
    fallback = await api.call("GET", f"{INGRESSES}?view=fallback", acme_admin)
    assert [item["uri"] for item in fallback["items"]] == ["https://meetings.example.com"]
    _, acme_user = await api.create_user("acme-user", tenant=tenant)
    meeting = await api.create_meeting(acme_user)
    assert meeting["ingress_http_uri"] == "https://meetings.example.com"

    response = await api.request("POST", INGRESSES, acme_admin, {"uri": "https://acme.example.com"})
    assert response.status == 201
    ingress = await response.json()
    second = await api.call("POST", INGRESSES, acme_admin, {"uri": "https://other.example.com"}, expect=400)
    assert second["details"]
    own = await api.call("GET", f"{INGRESSES}?view=fallback", acme_admin)
    assert [item["uri"] for item in own["items"]] == ["https://acme.example.com"]
    meeting = await api.call("GET", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", acme_user)
    assert meeting["ingress_http_uri"] == "https://acme.example.com"

    await api.call("PUT", f"{INGRESSES}/{ingress['uuid']}", acme_admin, {"uri": "https://new.example.com"}, expect=204)
    assert (await api.call("GET", f"{INGRESSES}/{ingress['uuid']}", acme_admin))["uri"] == "https://new.example.com"
    # Another tenant's admin does not see it.
    other = await api.create_tenant("other")
    _, other_admin = await api.create_user("other-admin", tenant=other, admin=True)
    await api.call("GET", f"{INGRESSES}/{ingress['uuid']}", other_admin, expect=404)
    await api.call("DELETE", f"{INGRESSES}/{ingress['uuid']}", acme_admin, expect=204)
    await api.call("GET", f"{INGRESSES}/{ingress['uuid']}", acme_admin, expect=404)


@pytest.mark.parametrize("uri", ["", "ftp://x", "not a uri", 12, None, "https://"])
async def test_bad_ingress(api: Api, uri: object) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    answer = await api.call("POST", INGRESSES, acme_admin, {"uri": uri}, expect=400)
    assert "uri" in answer["details"]


async def test_users_cannot_manage_ingresses(api: Api) -> None:
    _, alice = await api.create_user("alice")
    await api.call("POST", INGRESSES, alice, {"uri": "https://x.example.com"}, expect=403)
    await api.call("GET", f"{INGRESSES}/{uuid.uuid4()}", alice, expect=403)


async def test_confbridge_both_body_forms(api: Api) -> None:
    default = await api.call("GET", BRIDGE, api.admin_token)
    assert default["options"]["video_mode"] == "sfu"
    await api.call("PUT", BRIDGE, api.admin_token, {"options": {"video_mode": "none", "custom": "kept"}}, expect=204)
    assert (await api.call("GET", BRIDGE, api.admin_token))["options"] == {"video_mode": "none", "custom": "kept"}
    await api.call("PUT", BRIDGE, api.admin_token, {"video_mode": "follow_talker", "max_members": "10"}, expect=204)
    assert (await api.call("GET", BRIDGE, api.admin_token))["options"] == {
        "video_mode": "follow_talker",
        "max_members": "10",
    }
    assert api.services.confbridge.policy().max_members == 10
    assert api.services.capacity() == 10
    await api.call("PUT", USER, api.admin_token, {"options": {"quiet": "yes", "startmuted": "no"}}, expect=204)
    assert (await api.call("GET", USER, api.admin_token))["options"] == {"quiet": "yes", "startmuted": "no"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"options": {"video_mode": "mcu"}}, "options.video_mode"),
        ({"video_mode": 3}, "options.video_mode"),
        ({"options": {"max_members": "many"}}, "options.max_members"),
        ({"options": {"max_members": -1}}, "options.max_members"),
        ({"options": {"mixing_interval": "15"}}, "options.mixing_interval"),
        ({"options": {"unknown": {"nested": 1}}}, "options.unknown"),
        ({"options": "sfu"}, "options"),
    ],
)
async def test_confbridge_bad_values(api: Api, body: dict[str, object], field: str) -> None:
    answer = await api.call("PUT", BRIDGE, api.admin_token, body, expect=400)
    assert field in answer["details"], answer
    assert (await api.call("GET", BRIDGE, api.admin_token))["options"]["video_mode"] == "sfu"


async def test_confbridge_master_admins_only(api: Api) -> None:
    tenant = await api.create_tenant("acme")
    _, acme_admin = await api.create_user("acme-admin", tenant=tenant, admin=True)
    _, alice = await api.create_user("alice")
    await api.call("GET", BRIDGE, acme_admin, expect=403)
    await api.call("PUT", BRIDGE, acme_admin, {"video_mode": "none"}, expect=403)
    await api.call("PUT", USER, alice, {"quiet": "yes"}, expect=403)
    await api.call("GET", BRIDGE, expect=401)


async def test_confbridge_options_survive_restart(api: Api) -> None:
    await api.call("PUT", BRIDGE, api.admin_token, {"video_mode": "none"}, expect=204)
    from gateway.confd.confbridge.service import ConfbridgeService

    fresh = ConfbridgeService(api.services.db)
    await fresh.load()
    assert fresh.get("wazo_default_bridge") == {"video_mode": "none"}
