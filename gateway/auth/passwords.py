"""Slow password hashing (argon2id), off the event loop; secrets for generated credentials.

Hashing runs in a thread pool of its own, a few at a time, never in asyncio's default executor: that one also
resolves names and encodes media, and a flood of logins queued there stalled them. Past a bounded number of
waiting hashes a new one is refused at once (`HashingBusy`) rather than queued behind the flood.
"""

from __future__ import annotations

import asyncio
import secrets
import string
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
    """argon2id hashing and checking, `threads` at a time, at most `queue` more waiting."""

    def __init__(self, threads: int = 2, queue: int = 32) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._capacity = threads + queue
        self._pending = 0

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._pending >= self._capacity:
            raise HashingBusy()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        return await self._run(_hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        return await self._run(_verify, stored, password)

    @property
    def pending(self) -> int:
        return self._pending

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
