"""A small synchronous event emitter: every object in the tree (room, participant, leg) emits its own events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Listener = Callable[..., Any]


class EventEmitter:
    """Listeners are plain callables run in registration order; one failing listener does not stop the others."""

    def __init__(self) -> None:
        self.__listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener | None = None) -> Any:
        """Register `listener` for `event`; usable as a decorator when `listener` is omitted."""
        if listener is None:

            def decorator(func: Listener) -> Listener:
                self.on(event, func)
                return func

            return decorator
        self.__listeners.setdefault(event, []).append(listener)
        return listener

    def once(self, event: str, listener: Listener) -> None:
        def wrapper(*args: Any) -> None:
            self.remove_listener(event, wrapper)
            listener(*args)

        self.on(event, wrapper)

    def remove_listener(self, event: str, listener: Listener) -> None:
        listeners = self.__listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def remove_all_listeners(self) -> None:
        self.__listeners.clear()

    def emit(self, event: str, *args: Any) -> None:
        for listener in list(self.__listeners.get(event, ())):
            try:
                listener(*args)
            except Exception:
                logger.exception("listener for %r failed", event)
