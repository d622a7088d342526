"""Limits on the connections peers open to us (SIP over TCP and WebSocket): how many, and for how long.

- A cap on open connections in total and per source address; past either a new one is closed at once (TCP) or
  refused with 503 before the WebSocket upgrade.
- A message timeout: a connection must complete its first SIP message, and every message it starts, within
  `message_timeout` seconds (a slow-loris that never finishes its headers is closed).
- An idle timeout: a connection that brought no complete message for `idle_timeout` seconds is closed unless the
  layer above says it is in use (a registration or a dialog rides on it: phones and browsers rely on that). The
  guard knows nothing of SIP meaning; the stack answers `in_use(flow)`.

Connections we open ourselves (to Asterisk, to a phone) are not watched. Every limit that trips is logged, one
line per source address and minute at most, with a count of what was suppressed since the last line.

Written here rather than taken from a library: asyncio and aiohttp have no per-source caps or SIP-message-level
timeouts, and the idle rule needs the stack's answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .transport import Flow

__all__ = ["ConnectionGuard", "ConnectionLimits", "TripLog", "address_block"]

log = logging.getLogger(__name__)


def address_block(host: str) -> str:
    """What counts as one source: an IPv4 address, or an IPv6 /64 (one subscriber's block: an address each per
    connection costs nothing there). IPv4-mapped IPv6 is the IPv4 address; anything unparsable is itself."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 4096
    max_connections_per_source: int = 128
    message_timeout: float = 10.0
    idle_timeout: float = 120.0  # 0: never closed for idleness


class TripLog:
    """One log line per source and `interval` seconds when a limit trips; the rest counted into the next line."""

    MAX_SOURCES = 10_000

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, Counter[str]] = {}

    def trip(self, source: str, what: str, now: float, level: int = logging.WARNING) -> None:
        last = self._last.get(source)
        if last is not None and now - last < self.interval:
            self._suppressed.setdefault(source, Counter())[what] += 1
            return
        if len(self._last) >= self.MAX_SOURCES:
            self._forget_before(now - self.interval)
        self._last[source] = now
        suppressed = self._suppressed.pop(source, None)
        more = ""
        if suppressed:
            more = " (and since the last line: " + ", ".join(f"{n} x {w}" for w, n in suppressed.items()) + ")"
        log.log(level, "SIP connection limit from %s: %s%s", source, what, more)

    def _forget_before(self, moment: float) -> None:
        for source in [s for s, t in self._last.items() if t < moment]:
            del self._last[source]
            self._suppressed.pop(source, None)
        if len(self._last) >= self.MAX_SOURCES:  # all recent: drop the oldest half
            for source in sorted(self._last, key=self._last.__getitem__)[: self.MAX_SOURCES // 2]:
                del self._last[source]
                self._suppressed.pop(source, None)


@dataclass(slots=True, eq=False)
class _Watch:
    flow: Flow
    source: str
    opened: float
    last_message: float | None = None  # None: none yet
    partial_since: float | None = None  # bytes of an unfinished message are waiting since then
    idle_from: float = 0.0  # idleness counted from here (last message, or last time found in use)
    due: float = 0.0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class ConnectionGuard:
    """Admits accepted connections and closes those that break the message or idle timeout."""

    def __init__(self, limits: ConnectionLimits, in_use: Callable[[Flow], bool] | None = None) -> None:
        self.limits = limits
        self.in_use: Callable[[Flow], bool] = in_use or (lambda flow: False)
        self.trips = TripLog()
        self._per_source: Counter[str] = Counter()
        self._total = 0
        self._watches: dict[Flow, _Watch] = {}

    @property
    def total(self) -> int:
        return self._total

    def count(self, source: str) -> int:
        return self._per_source[address_block(source)]

    # -- admission --------------------------------------------------------------------------------------------
    def admit(self, source: str) -> bool:
        """Reserve a slot for a new connection from `source`, or False (logged) when a cap is reached."""
        source = address_block(source)
        limits = self.limits
        if self._total >= limits.max_connections:
            self._trip(source, f"refused: {limits.max_connections} connections open in total")
            return False
        if self._per_source[source] >= limits.max_connections_per_source:
            self._trip(source, f"refused: {limits.max_connections_per_source} connections open from it")
            return False
        self._total += 1
        self._per_source[source] += 1
        return True

    def release(self, source: str) -> None:
        """Give back a slot `admit` reserved (the connection never came up)."""
        source = address_block(source)
        self._total -= 1
        left = self._per_source[source] - 1
        if left > 0:
            self._per_source[source] = left
        else:
            del self._per_source[source]

    # -- watching ---------------------------------------------------------------------------------------------
    def watch(self, flow: Flow, source: str) -> None:
        """An admitted connection is up: its timeouts run from now until `forget`."""
        now = asyncio.get_running_loop().time()
        watch = _Watch(flow, address_block(source), now, idle_from=now)
        self._watches[flow] = watch
        self._schedule(watch, now + self.limits.message_timeout)

    def forget(self, flow: Flow) -> None:
        """The connection closed: its slot is free again."""
        watch = self._watches.pop(flow, None)
        if watch is None:
            return
        if watch.timer is not None:
            watch.timer.cancel()
        self.release(watch.source)

    def message(self, flow: Flow) -> None:
        """A complete SIP message arrived on the connection."""
        watch = self._watches.get(flow)
        if watch is not None:
            now = asyncio.get_running_loop().time()
            watch.last_message = watch.idle_from = now

    def partial(self, flow: Flow, waiting: bool) -> None:
        """Whether bytes of an unfinished message are waiting on the connection (stream transports)."""
        watch = self._watches.get(flow)
        if watch is None:
            return
        if not waiting:
            watch.partial_since = None
        elif watch.partial_since is None:
            now = asyncio.get_running_loop().time()
            watch.partial_since = now
            deadline = now + self.limits.message_timeout
            if deadline < watch.due:
                self._schedule(watch, deadline)

    def close(self) -> None:
        for watch in self._watches.values():
            if watch.timer is not None:
                watch.timer.cancel()
        self._watches.clear()

    # -- timeouts ---------------------------------------------------------------------------------------------
    def _schedule(self, watch: _Watch, when: float) -> None:
        if watch.timer is not None:
            watch.timer.cancel()
        watch.due = when
        watch.timer = asyncio.get_running_loop().call_at(when, self._check, watch)

    def _check(self, watch: _Watch) -> None:
        watch.timer = None
        if self._watches.get(watch.flow) is not watch:
            return
        limits = self.limits
        now = asyncio.get_running_loop().time()
        if watch.last_message is None and now >= watch.opened + limits.message_timeout:
            self._close(watch, f"closed: no complete SIP message within {limits.message_timeout:g} s of connecting")
            return
        if watch.partial_since is not None and now >= watch.partial_since + limits.message_timeout:
            self._close(watch, f"closed: a SIP message still incomplete after {limits.message_timeout:g} s")
            return
        deadlines = []
        if watch.last_message is None:
            deadlines.append(watch.opened + limits.message_timeout)
        if watch.partial_since is not None:
            deadlines.append(watch.partial_since + limits.message_timeout)
        if limits.idle_timeout > 0:
            idle_until = watch.idle_from + limits.idle_timeout
            if now >= idle_until:
                if not self._in_use(watch.flow):
                    self._close(watch, f"closed: idle for {limits.idle_timeout:g} s with no registration or dialog")
                    return
                watch.idle_from = now
                idle_until = now + limits.idle_timeout
            deadlines.append(idle_until)
        if deadlines:
            self._schedule(watch, min(deadlines))

    def _in_use(self, flow: Flow) -> bool:
        try:
            return self.in_use(flow)
        except Exception:
            log.exception("connection in-use check failed")
            return True

    def _close(self, watch: _Watch, why: str) -> None:
        # a timeout is routine for a quiet client, a refusal is not: INFO and WARNING
        self._trip(watch.source, why, logging.INFO)
        watch.flow.close()

    def _trip(self, source: str, what: str, level: int = logging.WARNING) -> None:
        self.trips.trip(source, what, asyncio.get_running_loop().time(), level)
