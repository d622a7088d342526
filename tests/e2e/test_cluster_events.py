"""Two control instances on one PostgreSQL and a real RabbitMQ: events cross instances in Wazo's format, a
meeting's expiry is carried out once with everyone hung up wherever they are, and a broker that drops the
connection is reconnected to without anyone doing anything."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import pytest

from gateway.app import BROKER, build_services, create_app
from gateway.config import Settings
from tests.api.test_events_expiry import events_socket, next_event
from tests.conftest import Api, make_settings
from tests.e2e.conftest import Room, guest_credentials
from tests.e2e.workers import BROKER as BROKER_URL
from tests.e2e.workers import rabbitmq_answers
from tests.waiting import until

pytestmark = [
    pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True),
    pytest.mark.skipif(
        not rabbitmq_answers(), reason="RabbitMQ is not answering on 127.0.0.1:5672 (.ci/run starts it)"
    ),
    pytest.mark.slow,
]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        MEETINGS_BUS__ENABLED="true",
        MEETINGS_BUS__URL=BROKER_URL,
        MEETINGS_BUS__CLUSTER=f"test-{uuid.uuid4().hex[:8]}",
        MEETINGS_MEETINGS__EXPIRY_SECONDS="6",
    )


@pytest.fixture
async def second(api: Api, settings: Settings, aiohttp_client: Any) -> AsyncIterator[Api]:
    """Another instance of the same deployment: same database, same bus, its own SIP stack and rooms."""
    services = build_services(settings)
    client = await aiohttp_client(create_app(settings, services))
    other = Api(client, services, admin_token=api.admin_token)
    for instance in (api, other):
        await instance.client.app[BROKER].wait_connected(15)
    yield other


async def test_events_cross_instances_in_wazo_format(api: Api, second: Api, settings: Settings) -> None:
    async with await aio_pika.connect(BROKER_URL) as connection:
        # a Wazo consumer: binds to the headers exchange by event name, as wazo-bus does
        channel = await connection.channel()
        exchange = await channel.declare_exchange("wazo-headers", aio_pika.ExchangeType.HEADERS, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        for name in ("meeting_created", "meeting_user_progress"):
            await queue.bind(exchange, arguments={"x-match": "all", "name": name})
        seen: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen.append(message)

        await queue.consume(consume, no_ack=True)

        socket_on_second = await events_socket(second, api.admin_token, "meeting_created")
        alice, alice_token = await api.create_user("alice")
        meeting = await api.create_meeting(alice_token)  # through the first instance

        created = await next_event(socket_on_second, 10)
        assert created["name"] == "meeting_created" and created["data"]["uuid"] == meeting["uuid"]

        await until(lambda: len(seen) >= 2, 10, "the Wazo consumer to get both events")
        ours = [m for m in seen if (m.headers or {}).get("meetings_cluster") == settings.bus.cluster]
        by_name = {str((m.headers or {})["name"]): m for m in ours}
        message = by_name["meeting_created"]
        headers = message.headers or {}
        body = json.loads(message.body)
        assert body["data"]["uuid"] == meeting["uuid"]
        assert headers["tenant_uuid"] == meeting["tenant_uuid"] and headers["origin_uuid"]
        assert headers["required_acl"] == f"events.{message.routing_key}"
        assert headers["required_access"] == "event.meeting_created"
        progress = by_name["meeting_user_progress"]
        assert (progress.headers or {})[f"user_uuid:{alice['uuid']}"] is True
        await socket_on_second.close()


async def test_expiry_is_carried_out_once_and_hangs_up_everyone_wherever_they_are(api: Api, second: Api) -> None:
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    deletions: list[str] = []
    for instance in (api, second):
        instance.services.bus.subscribe(lambda event: deletions.append(event.data["uuid"]), "meeting_deleted")
    async with aiohttp.ClientSession() as session:
        here, there = Room(api, session), Room(second, session)
        members = [
            await here.member(guest_credentials(meeting), None, None),
            await there.member(guest_credentials(meeting), None, None),
        ]
        try:
            for member in members:
                await member.join("meeting-guest")
            for member in members:
                assert member.call is not None
                await asyncio.wait_for(member.call.ended.wait(), 15)
                assert "expired" in (member.call.bye_reason or "") or "deleted" in (member.call.bye_reason or "")
        finally:
            for member in members:
                await member.close()
    # both instances hear of the one deletion (through the broker); only one carried it out
    await until(lambda: len(deletions) == 2, 5, "both instances to hear of the deletion")
    assert deletions == [meeting["uuid"]] * 2
    carried_out = sum(_expiries(instance) for instance in (api, second))
    assert carried_out == 1


def _expiries(instance: Api) -> float:
    value = instance.services.metrics.registry.get_sample_value("meetings_expiries_total")
    return float(value or 0.0)


async def test_a_dropped_broker_connection_comes_back_by_itself(api: Api, second: Api) -> None:
    link = second.client.app[BROKER]
    socket_on_second = await events_socket(second, api.admin_token, "meeting_created")
    await _close_connection(link.connection_name)
    await until(lambda: link.reconnections == 1 and link.connected, 30, "the instance to reconnect by itself")
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    created = await next_event(socket_on_second, 10)
    assert created["data"]["uuid"] == meeting["uuid"]
    await socket_on_second.close()


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    return out.decode()


async def _close_connection(name: str) -> None:
    """As an operator (or a broker restart) would: RabbitMQ closes that client's connection."""
    listing = await _rabbitmqctl("list_connections", "pid", "client_properties")
    pids = [line.split("\t")[0] for line in listing.splitlines() if name in line]
    assert pids, listing
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "test: broker drops")
