"""TURN credentials the web apps are handed work with Debian's coturn as deployed with ``use-auth-secret``: a real
allocation over TCP relays a datagram; a wrong or expired credential is refused. (The browser test behind a UDP
firewall, tests/browser/test_weak_networks.py, joins a meeting through them.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aioice.turn import create_turn_endpoint

from gateway.config import Settings, TurnSettings
from gateway.turn import turn_ice_server
from tests.conftest import Api, make_settings
from tests.coturn import TURNSERVER, Coturn, coturn

SECRET = "a-shared-secret-for-coturn-0123"
TTL = 600

pytestmark = pytest.mark.skipif(TURNSERVER is None, reason="coturn is not installed (make system-test-deps)")


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Coturn]:
    with coturn("127.0.0.1", SECRET, tmp_path) as server:
        yield server


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/meetings.db"


@pytest.fixture
def settings(database_url: str, turn: Coturn) -> Settings:
    return make_settings(
        database_url,
        MEETINGS_TURN__URLS=f"['{turn.url('tcp')}', '{turn.url('udp')}']",
        MEETINGS_TURN__SHARED_SECRET=SECRET,
        MEETINGS_TURN__CREDENTIAL_TTL_SECONDS=str(TTL),
        MEETINGS_MEDIA__ICE_SERVERS="[{urls: 'stun:stun.example.org:3478'}]",
    )


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def allocate(turn: Coturn, username: str, password: str) -> tuple[Any, _Client]:
    return await create_turn_endpoint(_Client, (turn.address, turn.port), username, password, transport="tcp")


async def test_the_apps_get_fresh_credentials_that_coturn_accepts(api: Api, turn: Coturn) -> None:
    first = (await api.call("GET", "/api/meetings-web/config.json"))["ice_servers"]
    second = (await api.call("GET", "/api/meetings-web/config.json"))["ice_servers"]
    assert first[0] == {"urls": "stun:stun.example.org:3478"}  # media.ice_servers come first, as configured
    server = first[1]
    assert server["urls"] == [turn.url("tcp"), turn.url("udp")]
    expiry, holder = server["username"].split(":")
    assert abs(int(expiry) - (time.time() + TTL)) < 5 and holder
    assert second[1]["username"] != server["username"]  # minted for each answer

    echo_transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    relay, client = await allocate(turn, server["username"], server["credential"])
    try:
        relay.sendto(b"through the relay", echo_transport.get_extra_info("sockname"))
        assert await asyncio.wait_for(client.received.get(), 5) == b"echo:through the relay"
    finally:
        relay.close()
        echo_transport.close()


async def test_coturn_refuses_a_wrong_or_expired_credential(turn: Coturn) -> None:
    settings = TurnSettings(urls=[turn.url()], shared_secret=SECRET, credential_ttl_seconds=TTL)
    good = turn_ice_server(settings)
    with pytest.raises(Exception, match="401"):
        await allocate(turn, good["username"], good["credential"][:-4] + "AAA=")
    expired = turn_ice_server(settings, now=time.time() - TTL - 60)
    with pytest.raises(Exception, match="401"):
        await allocate(turn, expired["username"], expired["credential"])
    other = turn_ice_server(
        TurnSettings(urls=[turn.url()], shared_secret="another-secret-entirely", credential_ttl_seconds=TTL)
    )
    with pytest.raises(Exception, match="401"):
        await allocate(turn, other["username"], other["credential"])
    relay, _ = await allocate(turn, good["username"], good["credential"])
    relay.close()


def test_turn_is_off_without_urls() -> None:
    assert turn_ice_server(TurnSettings()) == {}
