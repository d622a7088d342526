"""RFC 4733 telephone-events: digits from a plain-RTP leg."""

from __future__ import annotations

import struct

EVENTS = "0123456789*#ABCD"


class DtmfReceiver:
    """Reports each digit once, when its first end-of-event packet arrives (the end packet is sent three times)."""

    def __init__(self) -> None:
        self._last_ended: int | None = None

    def feed(self, payload: bytes, timestamp: int) -> str | None:
        if len(payload) < 4:
            return None
        event, flags, _duration = struct.unpack("!BBH", payload[:4])
        if not flags & 0x80 or event >= len(EVENTS):
            return None
        if timestamp == self._last_ended:
            return None
        self._last_ended = timestamp
        return EVENTS[event]
