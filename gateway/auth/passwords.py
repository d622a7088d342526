"""Slow password hashing (argon2id), off the event loop; secrets for generated credentials."""

from __future__ import annotations

import asyncio
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id baseline: 19 MiB, 2 passes.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the user does not exist, so an unknown user costs as much as a wrong password.
_DECOY = _hasher.hash(secrets.token_hex(16))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DECOY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored, password)


def random_secret(length: int = 20) -> str:
    """Letters and digits only (safe in SIP digest, URLs and "user:password" pairs), 5.95 bits a character."""
    found = ""
    while len(found) < length:
        found += secrets.token_urlsafe(length).replace("-", "").replace("_", "")
    return found[:length]


def random_username(length: int = 10) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))
