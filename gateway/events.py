"""The in-process event bus. Events are named and shaped as Wazo's; who may receive one is part of the event."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)

# Identifies this server as the origin of its events, as a Wazo engine's UUID does.
ORIGIN_UUID = str(uuid.uuid4())


@dataclass(frozen=True)
class Event:
    name: str
    tenant_uuid: UUID
    data: dict[str, Any]
    # The ACL a subscriber needs (Wazo: "events." + the routing key).
    required_acl: str
    # Set for per-user events (meeting_user_*): only this user receives it.
    user_uuid: UUID | None = None
    timestamp: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin_uuid": ORIGIN_UUID,
            "timestamp": self.timestamp,
            "tenant_uuid": str(self.tenant_uuid),
            "required_acl": self.required_acl,
            "data": self.data,
        }


Listener = Callable[[Event], None]
#: takes an event for another carrier (the broker), which delivers it back to every instance; False: not taken
Relay = Callable[[Event], bool]


class EventBus:
    """Publish is synchronous and never fails because of a listener: listeners queue work of their own."""

    def __init__(self) -> None:
        self._listeners: list[tuple[str | None, Listener]] = []
        self._relay: Relay | None = None

    def relay_through(self, relay: Relay | None) -> None:
        """Publish through `relay` (gateway.broker: RabbitMQ, so every instance receives every instance's events);
        what it does not take is delivered here only. None: back to this process alone."""
        self._relay = relay

    def subscribe(self, listener: Listener, name: str | None = None) -> Callable[[], None]:
        entry = (name, listener)
        self._listeners.append(entry)

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        relay = self._relay
        if relay is not None and relay(event):
            return
        self.deliver(event)

    def deliver(self, event: Event) -> None:
        """To this process's listeners."""
        for name, listener in list(self._listeners):
            if name is not None and name != event.name:
                continue
            try:
                listener(event)
            except Exception:
                logger.exception("event listener failed on %s", event.name)

    async def wait_for(self, name: str, within: float) -> Event:
        """The next event of that name (for call control and tests)."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        def listener(event: Event) -> None:
            if not future.done():
                future.set_result(event)

        unsubscribe = self.subscribe(listener, name)
        try:
            return await asyncio.wait_for(future, within)
        finally:
            unsubscribe()
