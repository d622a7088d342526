"""Slow password hashing (argon2id), off the event loop; secrets for generated credentials.

Hashing runs in a thread pool of its own, a few at a time, never in asyncio's default executor: that one also
resolves names and encodes media, and a flood of logins queued there stalled them. Past a bounded number of
waiting hashes a new one is refused at once (`HashingBusy`) rather than queued behind the flood.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.http.errors import ServiceUnavailable

T = TypeVar("T")

# OWASP's argon2id baseline: 19 MiB, 2 passes.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the user does not exist, so an unknown user costs as much as a wrong password.
_DECOY = _hasher.hash(secrets.token_hex(16))


class HashingBusy(ServiceUnavailable):
    """Too many password hashes are waiting already: 503, try again in a second."""

    def __init__(self) -> None:
        super().__init__("Too many password checks in progress; try again shortly")
        self.headers["Retry-After"] = "1"


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DECOY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class PasswordHashing:
    """argon2id hashing and checking, `threads` at a time, at most `queue` more waiting.

    A check marked `suspect` (its source or username failed recently) waits behind every other one, and a full
    queue drops the newest suspect waiter to make room for an unsuspected check: a distributed flood of guesses
    cannot keep an ordinary login waiting behind it.
    """

    def __init__(self, threads: int = 2, queue: int = 32) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._threads = threads
        self._queue = queue
        self._running = 0
        self._clean: deque[asyncio.Future[None]] = deque()
        self._suspect: deque[asyncio.Future[None]] = deque()

    @property
    def pending(self) -> int:
        """Checks running or waiting."""
        return self._running + len(self._clean) + len(self._suspect)

    async def _slot(self, suspect: bool) -> None:
        if self._running < self._threads and not self._clean and not self._suspect:
            self._running += 1
            return
        if len(self._clean) + len(self._suspect) >= self._queue:
            if suspect or not self._suspect:
                raise HashingBusy()
            self._suspect.pop().set_exception(HashingBusy())
        waiter = asyncio.get_running_loop().create_future()
        (self._suspect if suspect else self._clean).append(waiter)
        try:
            await waiter  # a finished check hands its slot over: `_running` already counts this one
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release()  # handed a slot, then cancelled: pass it on
            elif waiter in self._clean or waiter in self._suspect:
                (self._suspect if suspect else self._clean).remove(waiter)
            raise

    def _release(self) -> None:
        for waiters in (self._clean, self._suspect):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._running -= 1

    async def _run(self, suspect: bool, function: Callable[..., T], *args: Any) -> T:
        await self._slot(suspect)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        finally:
            self._release()

    async def hash(self, password: str) -> str:
        return await self._run(False, _hasher.hash, password)

    async def verify(self, stored: str | None, password: str, suspect: bool = False) -> bool:
        return await self._run(suspect, _verify, stored, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def random_secret(length: int = 20) -> str:
    """Letters and digits only (safe in SIP digest, URLs and "user:password" pairs), 5.95 bits a character."""
    found = ""
    while len(found) < length:
        found += secrets.token_urlsafe(length).replace("-", "").replace("_", "")
    return found[:length]


def random_username(length: int = 10) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))
