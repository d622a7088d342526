"""Failed logins are throttled per source and per username (issue 12, defect 5), over the token API and SIP digest,
on real sockets: the flood comes from 127.0.0.2, the honest client from 127.0.0.1 (both loopback)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from gateway.app import SIP_STACK
from gateway.auth.passwords import HashingBusy, PasswordHashing
from gateway.config import Settings
from tests.api.sippeer import SipPeer
from tests.conftest import ADMIN_PASSWORD, Api, make_settings

TOKEN = "/api/auth/0.1/token"
ATTACKER = "127.0.0.2"


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/meetings.db"  # the throttle is not about the database


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def flood(api: Api, attempts: int, username: str | None, source: str = ATTACKER) -> tuple[Counter[int], set[str]]:
    """Wrong passwords from `source`, all at once (one username, or a new one each time); statuses counted."""
    url = api.client.make_url(TOKEN)
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=50)
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            async with session.post(url, headers=basic(username or f"{source}-user{i}", "wrong")) as response:
                statuses[response.status] += 1
                if response.status == 429:
                    retry_after.add(response.headers["Retry-After"])
                    assert (await response.json())["error_id"] == "too-many-requests"

        await asyncio.gather(*(one(i) for i in range(attempts)))
    return statuses, retry_after


async def test_a_flood_of_wrong_passwords_is_throttled_while_others_log_in(api: Api) -> None:
    await api.create_user("alice", "alice-password")
    flooding = asyncio.ensure_future(flood(api, 300, None))
    await asyncio.sleep(0)
    started = time.monotonic()
    token = await api.login("alice", "alice-password")  # from 127.0.0.1, another user, during the flood
    took = time.monotonic() - started
    statuses, retry_after = await flooding
    print(f"valid login during a 300-attempt flood: {took:.2f} s; flood answered {dict(statuses)}")
    assert token
    assert took < 10  # generous: the machine is shared; unthrottled it queued behind 300 argon2 checks
    per_source = api.services.settings.auth.login_failures_per_source
    assert statuses[401] <= per_source
    assert statuses[429] >= 300 - per_source
    assert all(1 <= int(value) <= 300 for value in retry_after)


@pytest.mark.slow
async def test_a_distributed_flood_does_not_keep_a_valid_login_waiting(api: Api) -> None:
    """30 addresses, 10 guesses each: under every per-source limit, so only the hashing pool stands in the way.
    Their checks are suspect (their sources failed); the valid login is not and goes first."""
    await api.create_user("alice", "alice-password")
    sources = [f"127.0.0.{10 + i}" for i in range(30)]
    for source in sources:  # one failure each first: the flood below comes from addresses that failed
        assert (await flood(api, 1, None, source))[0] == {401: 1}
    flooding = asyncio.ensure_future(asyncio.gather(*(flood(api, 10, None, source) for source in sources)))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    token = await api.login("alice", "alice-password")
    took = time.monotonic() - started
    statuses: Counter[int] = Counter()
    for counted, _ in await flooding:
        statuses.update(counted)
    print(f"valid login during a 300-attempt flood from 30 addresses: {took:.2f} s; flood answered {dict(statuses)}")
    assert token
    assert took < 10
    assert set(statuses) <= {401, 503} and statuses[503] > 0  # the queue is bounded: the rest told to retry


async def test_one_username_is_throttled_from_any_source(api: Api) -> None:
    statuses, _ = await flood(api, 40, "admin")
    assert statuses[401] <= api.services.settings.auth.login_failures_per_username
    assert statuses[429] >= 40 - api.services.settings.auth.login_failures_per_username
    # the admin's own source is not throttled, his username is: the answer says when to try again
    refused = await api.request("POST", TOKEN, headers=basic("admin", ADMIN_PASSWORD))
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1


async def test_successful_logins_never_count(api: Api) -> None:
    per_source = api.services.settings.auth.login_failures_per_source
    for _ in range(per_source + 5):
        await api.login("admin", ADMIN_PASSWORD)
    assert (await api.request("POST", TOKEN, headers=basic("admin", "wrong"))).status == 401


class TestWindow:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(
            database_url,
            MEETINGS_AUTH__LOGIN_FAILURES_PER_SOURCE="3",
            MEETINGS_AUTH__LOGIN_FAILURES_PER_USERNAME="3",
            MEETINGS_AUTH__LOGIN_FAILURE_WINDOW_SECONDS="3",
        )

    async def test_a_throttled_user_gets_in_again_after_retry_after(self, api: Api) -> None:
        for _ in range(3):
            assert (await api.request("POST", TOKEN, headers=basic("admin", "typo"))).status == 401
        refused = await api.request("POST", TOKEN, headers=basic("admin", ADMIN_PASSWORD))
        assert refused.status == 429
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 3
        await asyncio.sleep(wait)  # what a client told Retry-After does; then the right password works
        assert await api.login("admin", ADMIN_PASSWORD)


# -- SIP digest ---------------------------------------------------------------------------------------------------
async def test_a_register_flood_with_wrong_passwords_is_throttled_while_another_account_registers(api: Api) -> None:
    udp = api.client.app[SIP_STACK].udp
    assert udp is not None
    _, alice_token = await api.create_user("alice", "alice-password")
    alice = await api.call("GET", "/api/confd/1.1/users/me", alice_token)
    admin = await api.call("GET", "/api/confd/1.1/users/me", api.admin_token)
    attackers = [SipPeer(ATTACKER, udp.port) for _ in range(60)]  # a socket each: answers do not interleave
    attacker, honest = attackers[0], SipPeer("127.0.0.1", udp.port)
    try:
        victim = admin["sip"]["username"]
        answers = await asyncio.gather(
            *(peer.register(victim, f"guess{i}", f"flood-{i}") for i, peer in enumerate(attackers))
        )
        statuses = Counter(answer.status for answer in answers)
        throttled = [answer for answer in answers if answer.headers.get("retry-after")]
        assert statuses == {403: 60}
        assert len(throttled) >= 60 - api.services.settings.auth.login_failures_per_username
        assert all("retry later" in (answer.headers.get("reason") or "") for answer in throttled)
        # while that username is refused unchecked, another account from another address registers
        started = time.monotonic()
        registered = await honest.register(alice["sip"]["username"], alice["sip"]["password"], "honest-1")
        print(f"REGISTER of another account after the flood: {time.monotonic() - started:.3f} s")
        assert registered.status == 200
        # guessing on among other names, the flooding source itself runs out: even a right password is refused
        per_source = api.services.settings.auth.login_failures_per_source
        sprayed = await asyncio.gather(
            *(peer.register(f"name{i}", "guess", f"spray-{i}") for i, peer in enumerate(attackers[:30]))
        )
        assert Counter(answer.status for answer in sprayed) == {403: 30}
        assert sum(1 for answer in sprayed if answer.headers.get("retry-after")) >= 30 - per_source
        other = await attacker.register(alice["sip"]["username"], alice["sip"]["password"], "flood-x")
        assert other.status == 403 and other.headers.get("retry-after")
        assert (await honest.register(alice["sip"]["username"], alice["sip"]["password"], "honest-2")).status == 200
    finally:
        for peer in [*attackers, honest]:
            peer.close()


# -- the password hashing pool -------------------------------------------------------------------------------------
async def test_password_checks_wait_in_a_bounded_pool_of_their_own() -> None:
    hashing = PasswordHashing(threads=1, queue=2)
    try:
        stored = await hashing.hash("secret")
        checks = [asyncio.ensure_future(hashing.verify(stored, f"guess{i}")) for i in range(12)]
        await asyncio.sleep(0)
        # asyncio's default executor (name resolution, media encoding) is not behind the queued checks
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, lambda: None)
        print(f"default executor while 12 password checks are queued: {time.monotonic() - started:.4f} s")
        results = await asyncio.gather(*checks, return_exceptions=True)
        busy = [r for r in results if isinstance(r, HashingBusy)]
        assert len(busy) == 12 - 3  # one running, two waiting, the rest refused at once
        assert [r for r in results if not isinstance(r, HashingBusy)] == [False, False, False]
        assert await hashing.verify(stored, "secret")
    finally:
        hashing.close()


async def test_an_unsuspected_password_check_goes_before_suspect_ones() -> None:
    hashing = PasswordHashing(threads=1, queue=3)
    try:
        stored = await hashing.hash("secret")
        finished: list[str] = []

        async def check(name: str, suspect: bool) -> None:
            try:
                await hashing.verify(stored, name, suspect)
                finished.append(name)
            except HashingBusy:
                finished.append(f"busy {name}")

        suspects = [asyncio.ensure_future(check(f"s{i}", True)) for i in range(5)]
        await asyncio.sleep(0)
        assert finished == ["busy s4"]  # s0 runs, s1-s3 wait, s4 found the queue full
        clean = asyncio.ensure_future(check("clean", False))
        await asyncio.gather(clean, *suspects)
        # the clean check took the newest suspect's place and went right after the one running
        assert finished == ["busy s4", "busy s3", "s0", "clean", "s1", "s2"]
    finally:
        hashing.close()


async def test_sip_guesses_at_a_name_do_not_hold_back_the_api_login_of_that_name(api: Api) -> None:
    udp = api.client.app[SIP_STACK].udp
    assert udp is not None
    peers = [SipPeer(ATTACKER, udp.port) for _ in range(15)]
    try:
        answers = await asyncio.gather(*(p.register("admin", "guess", f"admin-{i}") for i, p in enumerate(peers)))
        assert any(answer.headers.get("retry-after") for answer in answers)  # "admin" is throttled for SIP
    finally:
        for peer in peers:
            peer.close()
    assert await api.login("admin", ADMIN_PASSWORD)  # the API account of that name is not
