"""The bus turned on with no broker answering: the server starts and works, its events reach its own clients."""

from __future__ import annotations

import socket

import pytest

from gateway.app import BROKER
from gateway.config import Settings
from tests.api.test_events_expiry import events_socket, next_event
from tests.conftest import Api, make_settings


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url, MEETINGS_BUS__ENABLED="true", MEETINGS_BUS__URL=f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    )


async def test_events_stay_on_the_instance_while_the_broker_is_out_of_reach(api: Api) -> None:
    assert not api.client.app[BROKER].connected
    socket_ = await events_socket(api, api.admin_token, "meeting_created")
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    created = await next_event(socket_)
    assert created["data"]["uuid"] == meeting["uuid"]
    await socket_.close()
