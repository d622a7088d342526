"""Run a coroutine eagerly: up to its first suspension, in the caller, without a task.

Most requests' coroutines (a credential lookup answered from memory, then a response) never suspend; creating an
asyncio task for each costs a task, a loop iteration and a context copy. `start_eagerly` steps the coroutine at
once: when it finishes there, nothing more is made; when it suspends on a future, the rest goes into a coroutine
the caller wraps in a task, and that task resumes the original exactly where it stopped (Python 3.12's
`eager_start`, for 3.11).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["start_eagerly"]

T = TypeVar("T")


def start_eagerly(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T] | None:
    """Step `coro` until it suspends. None when it has finished (an exception it raised propagates here);
    otherwise a coroutine that finishes it, for the caller to run as a task."""
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    return _finish(_Resumed(coro, pending))


async def _finish(resumed: _Resumed[T]) -> T:
    return await resumed


class _Resumed(Generic[T]):
    """Awaitable that hands the future `coro` is blocked on to the running task, then keeps driving `coro`:
    wake-ups are sent in, exceptions (cancellation) thrown in, as the task itself would."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, T], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, None, T]:
        coro = self._coro
        pending = self._pending
        self._pending = None
        while True:
            try:
                yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:
                try:
                    pending = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value
