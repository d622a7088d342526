"""Waiting in tests for something that happens on its own time (media arriving, a call ending)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], seconds: float = 5.0, what: str = "the condition") -> None:
    """Return as soon as `condition()` holds; fail naming `what` if it has not after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
