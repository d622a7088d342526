"""The event bus carried over RabbitMQ, so that every control instance sees every instance's events.

Events go out as Wazo's services publish theirs (wazo-bus): on a headers exchange (`wazo-headers` by default), with
the event's routing key (its ACL without the `events.` prefix), headers `name`, `origin_uuid`, `timestamp`,
`tenant_uuid`, `required_acl`, `required_access` and, for per-user events, `user_uuid` and `user_uuid:<uuid>: true`;
the body is those headers plus `data`. Wazo's own consumers can bind to them. One more header, `meetings_cluster`,
names the deployment: each instance binds an exclusive queue to it and delivers what arrives, its own events
included, to its local listeners (the events WebSocket, call control, expiry).

aio-pika's robust connection reconnects by itself and restores the queue, its binding and the consumer. While the
broker cannot be reached (at start-up or later) events are delivered on this instance only: nothing is held back,
and what other instances miss during the gap is lost, as on Wazo's bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from gateway.events import ORIGIN_UUID, Event, EventBus

logger = logging.getLogger(__name__)

CLUSTER_HEADER = "meetings_cluster"
#: events waiting for the broker before this instance keeps the rest to itself
OUTGOING_LIMIT = 10_000
RECONNECT_SECONDS = 2.0


async def connect(url: str, connection_name: str) -> AbstractRobustConnection:
    """A robust connection to RabbitMQ: retried until the broker answers, then restored by itself after a loss
    (its channels, queues, bindings and consumers with it). The event bus and the media workers both use it."""
    return await aio_pika.connect_robust(
        url,
        fail_fast=False,
        reconnect_interval=RECONNECT_SECONDS,
        client_properties={"connection_name": connection_name},
    )


def routing_key(event: Event) -> str:
    return event.required_acl.removeprefix("events.")


def wazo_headers(event: Event, cluster: str) -> dict[str, Any]:
    headers: dict[str, Any] = {
        "name": event.name,
        "origin_uuid": ORIGIN_UUID,
        "timestamp": datetime.datetime.fromtimestamp(event.timestamp, datetime.UTC).isoformat(),
        "tenant_uuid": str(event.tenant_uuid),
        "required_acl": event.required_acl,
        "required_access": f"event.{event.name}",
        CLUSTER_HEADER: cluster,
    }
    if event.user_uuid is not None:
        headers["user_uuid"] = str(event.user_uuid)
        headers[f"user_uuid:{event.user_uuid}"] = True
    return headers


def encode(event: Event, cluster: str) -> aio_pika.Message:
    headers = wazo_headers(event, cluster)
    body = json.dumps({**headers, "data": event.data}).encode()
    return aio_pika.Message(
        body,
        headers=headers,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        timestamp=datetime.datetime.fromtimestamp(event.timestamp, datetime.UTC),
    )


def decode(body: bytes) -> Event:
    """The event a message carries; ValueError (or KeyError/TypeError) when it is not one of ours."""
    payload = json.loads(body)
    user = payload.get("user_uuid")
    timestamp = datetime.datetime.fromisoformat(payload["timestamp"]).timestamp()
    return Event(
        name=str(payload["name"]),
        tenant_uuid=uuid.UUID(payload["tenant_uuid"]),
        data=dict(payload["data"]),
        required_acl=str(payload["required_acl"]),
        user_uuid=uuid.UUID(user) if user else None,
        timestamp=timestamp,
    )


class BrokerLink:
    """Relays one instance's event bus through RabbitMQ and delivers what the cluster publishes back to it."""

    def __init__(self, bus: EventBus, url: str, exchange: str, cluster: str) -> None:
        self.bus = bus
        self.url = url
        self.exchange_name = exchange
        self.cluster = cluster
        #: how RabbitMQ's management tools list this instance's connection
        self.connection_name = f"meetings {cluster} {uuid.uuid4().hex[:8]}"
        self.reconnections = 0
        self.published = 0
        self.received = 0
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._ready = asyncio.Event()
        self._outgoing: asyncio.Queue[Event] = asyncio.Queue(OUTGOING_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def connected(self) -> bool:
        connection = self._connection
        return self._ready.is_set() and connection is not None and connection.connected.is_set()

    def start(self) -> None:
        """Connect in the background: start-up does not wait for the broker."""
        self.bus.relay_through(self.relay)
        self._tasks = [asyncio.create_task(self._connect()), asyncio.create_task(self._send_outgoing())]

    async def wait_connected(self, within: float) -> None:
        await asyncio.wait_for(self._ready.wait(), within)

    async def close(self) -> None:
        self._closing = True
        self.bus.relay_through(None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._connection is not None:
            await self._connection.close()

    def relay(self, event: Event) -> bool:
        """Take the event for the broker; False (deliver it here only) while the broker is out of reach."""
        if not self.connected:
            return False
        try:
            self._outgoing.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def _connect(self) -> None:
        connection = await connect(self.url, self.connection_name)
        self._connection = connection
        connection.reconnect_callbacks.add(self._reconnected)
        connection.close_callbacks.add(self._lost)
        channel = await connection.channel()
        self._exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.HEADERS, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key="", arguments={"x-match": "all", CLUSTER_HEADER: self.cluster})
        await queue.consume(self._on_message, no_ack=True)
        self._ready.set()
        logger.info("event broker: connected, exchange %s, cluster %s", self.exchange_name, self.cluster)

    def _reconnected(self, *_: Any) -> None:
        self.reconnections += 1
        logger.info("event broker: reconnected")

    def _lost(self, *_: Any) -> None:
        if self._closing:
            return
        logger.warning("event broker: connection lost; events stay on this instance until it is back")

    async def _send_outgoing(self) -> None:
        while True:
            event = await self._outgoing.get()
            exchange = self._exchange
            try:
                if exchange is None or not self.connected:
                    raise ConnectionError("not connected")
                await exchange.publish(encode(event, self.cluster), routing_key=routing_key(event), timeout=5)
                self.published += 1
            except Exception as exc:  # any failure of the broker's: this instance still gets its own event
                logger.debug("event broker: %s not published (%s): delivered here only", event.name, exc)
                self.bus.deliver(event)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode(message.body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("event broker: ignored a message that is not an event (%s)", exc)
            return
        self.received += 1
        self.bus.deliver(event)
