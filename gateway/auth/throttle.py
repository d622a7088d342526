"""Failed-login throttling, per username and per source address, for the token API and SIP digest alike.
A source is an IPv4 address or an IPv6 /64 (`signaling.connlimits.address_block`).

Each key (a username, a source address) has a leaky bucket of failures: it holds up to `burst` of them and drains
`burst` every `window` seconds, so a real user who mistyped is let in again within the window, never locked out
for good. An attempt is admitted only while both its buckets have room, and it counts as a failure from the
moment it is admitted (concurrent guesses from one source are held back before any of them was checked); a
success takes it back, so successful logins never throttle anyone.

Written here rather than taken from `limits` or `pyrate-limiter`: both count hits but cannot take back an
admitted attempt that turned out to be a success, which is what makes only failures count while every attempt
in flight still counts.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import AuthSettings
from signaling.connlimits import address_block

logger = logging.getLogger(__name__)

# Keys remembered at most; past it the least recently failed are forgotten (a spray of sources cannot fill memory).
MAX_TRACKED_KEYS = 100_000
# One log line per key and this many seconds while it stays throttled.
LOG_INTERVAL = 60.0


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float
    logged: float = -math.inf
    refused: int = 0


class FailureBuckets:
    """Leaky buckets of failures for one kind of key."""

    def __init__(self, kind: str, burst: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.burst = burst
        self.rate = burst / window  # failures drained per second
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _current(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket.level = max(0.0, bucket.level - (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def wait(self, key: str, now: float) -> float:
        """0 if one more failure fits, else the seconds until it does."""
        bucket = self._current(key, now)
        if bucket is None or bucket.level + 1 <= self.burst:
            return 0.0
        return (bucket.level + 1 - self.burst) / self.rate

    def add(self, key: str, now: float) -> None:
        bucket = self._current(key, now)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(0.0, now)
            if len(self._buckets) > MAX_TRACKED_KEYS:
                self._forget_drained(now)
        else:
            self._buckets.move_to_end(key)
        bucket.level += 1

    def failing(self, key: str, now: float) -> bool:
        """Whether the key failed recently, not counting the one attempt in flight."""
        bucket = self._current(key, now)
        return bucket is not None and bucket.level > 1.0

    def take_back(self, key: str, now: float) -> None:
        bucket = self._current(key, now)
        if bucket is not None:
            bucket.level = max(0.0, bucket.level - 1)

    def note_refusal(self, key: str, now: float, retry_after: float) -> None:
        """Log a throttled key once per LOG_INTERVAL, with how many attempts were refused since the last line."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        bucket.refused += 1
        if now - bucket.logged >= LOG_INTERVAL:
            logger.warning(
                "login throttled for %s %r: %d attempt(s) refused, more than %d failures in %.0f s (retry after %d s)",
                self.kind, key, bucket.refused, self.burst, self.burst / self.rate, math.ceil(retry_after),
            )  # fmt: skip
            bucket.logged = now
            bucket.refused = 0

    def _forget_drained(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.level - (now - b.updated) * self.rate <= 0]:
            del self._buckets[key]
        while len(self._buckets) > MAX_TRACKED_KEYS * 9 // 10:  # room for a while: the sweep is not per add
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class LoginThrottle:
    """Admits login attempts (HTTP Basic or SIP digest) while neither their username nor their source failed too
    often; the SIP stack's `LoginThrottle` and the token API's guard."""

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        window = settings.login_failure_window_seconds
        self._clock = clock
        self._by_username = FailureBuckets("username", settings.login_failures_per_username, window, clock)
        self._by_source = FailureBuckets("source", settings.login_failures_per_source, window, clock)

    def admit(self, username: str, source: str) -> float:
        """0.0: the attempt goes ahead and counts as a failure until `succeeded`; otherwise it is refused and the
        result is the seconds before the next attempt can be admitted (a Retry-After)."""
        now = self._clock()
        source = address_block(source)
        by_source = self._by_source.wait(source, now)
        by_username = self._by_username.wait(username, now)
        if by_source or by_username:
            if by_source:
                self._by_source.note_refusal(source, now, by_source)
            if by_username:
                self._by_username.note_refusal(username, now, by_username)
            return max(by_source, by_username)
        self._by_source.add(source, now)
        self._by_username.add(username, now)
        return 0.0

    def suspect(self, username: str, source: str) -> bool:
        """Whether an admitted attempt comes from a source, or names a user, that failed recently: its password
        check waits behind the others."""
        now = self._clock()
        return self._by_source.failing(address_block(source), now) or self._by_username.failing(username, now)

    def succeeded(self, username: str, source: str) -> None:
        """The admitted attempt was not a failure: take it back."""
        now = self._clock()
        self._by_source.take_back(address_block(source), now)
        self._by_username.take_back(username, now)


class SipLoginThrottle:
    """The same throttle for SIP digest: its usernames are SIP accounts, not API logins, so a flood of SIP guesses
    at "admin" does not hold back the API's admin; the source addresses are shared (one flood, one source)."""

    PREFIX = "sip:"

    def __init__(self, throttle: LoginThrottle) -> None:
        self._throttle = throttle

    def admit(self, username: str, source: str) -> float:
        return self._throttle.admit(self.PREFIX + username, source)

    def succeeded(self, username: str, source: str) -> None:
        self._throttle.succeeded(self.PREFIX + username, source)


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
