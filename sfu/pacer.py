"""One subscriber's pacer: his video leaves at the rate his bandwidth estimate allows, never piling up delay.

A token bucket in bytes, filled at the estimate (`BandwidthEstimate.bitrate`, read at each refill) up to a small
burst (`BURST_SECONDS` of the rate, at least `BURST_MIN` bytes). What it paces, in order:
- audio is never queued here: the leg sends it at once and `charge`s the bucket with it (the mix is small and
  steady, and late audio is worse than none), so video gets what audio leaves, and audio's queueing delay in the
  pacer is nil at any rate (the bucket may go into debt by at most `MAX_QUEUE_DELAY` of the rate);
- retransmissions (`retransmission=True`) go before queued video (the receiver is waiting for them), but only
  while the queue holds less than half its bound: over budget they are dropped first (the keyframe-request gate
  then sees the repair fail);
- video: sent at once when the queue is empty and the bucket holds enough (the common case: no timer, no copy);
  otherwise queued. The queue is bounded in time: a packet that would wait more than `MAX_QUEUE_DELAY` at the
  current rate is dropped (drop video, never build delay), and a rate that falls drops what has waited too long.
One timer at most is pending (`loop.call_at`), and each wake-up sends every packet the bucket allows: the cost is
per wake-up, not per packet. A queued packet's abs-send-time is stamped again as it leaves (a receiver's delay-based
estimate would otherwise read queueing here as congestion on the link).

Probing (`probe`): while one of the subscriber's slots is paused, the allocator (sfu/allocation.py) may ask for
padding so that everything sent comes to a given rate, a little more each round; the padding (RTX padding-only
packets, sent by one of the leg's slot senders, `padders`: one whose slot carries media if there is one) goes out
in the same wake-ups, every `PROBE_INTERVAL`: a rate is known to pass only once it was sent, and that is how the
estimate (sfu/bandwidth.py) climbs back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from .bandwidth import BandwidthEstimate
from .rtprewriter import abs_send_time

#: the most time a video packet may wait here (audio never waits here): a keyframe of a single-layer stream on a
#: thin link must fit in it, or it arrives broken (the allocator resumes a slot only when it would)
MAX_QUEUE_DELAY = 0.3
#: the bucket's depth: this much of the rate, at least `BURST_MIN` bytes (a couple of full packets)
BURST_SECONDS = 0.02
BURST_MIN = 2500
#: a wake-up sends what came due meanwhile: at most this often (packets are batched per wake-up)
WAKE_INTERVAL = 0.005
#: padding is sent in wake-ups this far apart while probing, at most this much of the probe rate at once
PROBE_INTERVAL = 0.01
PROBE_BURST_SECONDS = 0.02
#: bytes a packet costs on the wire beyond what is handed to the socket (IPv4 + UDP)
WIRE_OVERHEAD = 28


Send = Callable[[bytes], bool]


class Pacer:
    def __init__(self, estimate: BandwidthEstimate, max_queue_delay: float = MAX_QUEUE_DELAY) -> None:
        self.estimate = estimate
        self.max_queue_delay = max_queue_delay
        #: what became of the packets: sent (at once or from the queue), dropped for the bound
        self.sent = 0
        self.queued = 0
        self.dropped = 0
        self.retransmissions_dropped = 0
        #: bytes sent: everything (audio charged and padding included), and what was charged (audio, RTCP)
        self.bytes_sent = 0
        self.bytes_charged = 0
        #: padding sent to probe for more bandwidth (bytes), and who can send it: callables that send one padding
        #: packet and return its size (0: cannot now), registered by the leg's slot senders
        self.padding_sent = 0
        self.padders: list[Callable[[bool], int]] = []
        self._probe_rate = 0.0
        self._probe_credit = 0.0
        self._probe_at = 0.0
        self._probe_base = 0
        self._tokens = float(BURST_MIN)
        self._refilled = time.monotonic()
        self._video: deque[tuple[Send, bytes, float, int]] = deque()
        self._retransmissions: deque[tuple[Send, bytes, float, int]] = deque()
        self._queued_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def queue_delay(self) -> float:
        """How long what is queued now takes to leave at the current rate."""
        return max(0.0, self._queued_bytes - self._tokens) * 8 / max(self.estimate.bitrate, 1.0)

    def _refill(self, now: float) -> float:
        """Tokens for the time since the last refill; returns the rate in bytes a second."""
        byte_rate = self.estimate.bitrate / 8
        tokens = self._tokens + (now - self._refilled) * byte_rate
        depth = max(BURST_MIN, byte_rate * BURST_SECONDS)
        self._tokens = tokens if tokens < depth else depth
        self._refilled = now
        return byte_rate

    def charge(self, size: int) -> None:
        """`size` bytes sent outside the pacer (audio, RTCP): video waits for them."""
        now = time.monotonic()
        byte_rate = self._refill(now)
        self._tokens = max(self._tokens - size - WIRE_OVERHEAD, -byte_rate * self.max_queue_delay)
        self.bytes_sent += size + WIRE_OVERHEAD
        self.bytes_charged += size + WIRE_OVERHEAD

    def send(self, send: Send, data: bytes, *, stamp_at: int = 0, retransmission: bool = False) -> bool:
        """Send `data` with `send` now or soon (False: dropped now, by the path or for the bound). `stamp_at`: where
        its abs-send-time value is (0: nowhere), stamped again if it waits."""
        if self._closed:
            return False
        size = len(data) + WIRE_OVERHEAD
        now = time.monotonic()
        byte_rate = self._refill(now)
        if not self._video and not self._retransmissions and self._tokens >= size:
            self._tokens -= size
            self.bytes_sent += size
            self.sent += 1
            return send(_stamped(data, stamp_at) if retransmission and stamp_at else data)
        waiting = (self._queued_bytes + size - self._tokens) / byte_rate if byte_rate > 0 else float("inf")
        if retransmission:
            if waiting > self.max_queue_delay / 2:
                self.retransmissions_dropped += 1
                return False
            self._retransmissions.append((send, data, now, stamp_at))
        else:
            if waiting > self.max_queue_delay:
                self._drop_retransmissions()
                waiting = (self._queued_bytes + size - self._tokens) / byte_rate if byte_rate > 0 else waiting
                if waiting > self.max_queue_delay:
                    self.dropped += 1
                    return False
            self._video.append((send, data, now, stamp_at))
        self._queued_bytes += size
        self.queued += 1
        self._schedule(now, byte_rate)
        return True

    def _drop_retransmissions(self) -> None:
        while self._retransmissions:
            _, data, _, _ = self._retransmissions.popleft()
            self._queued_bytes -= len(data) + WIRE_OVERHEAD
            self.retransmissions_dropped += 1

    def probe(self, bitrate: float) -> None:
        """Send padding so that everything sent comes to `bitrate` bits a second (0: stop)."""
        if bitrate > 0 and not self._probe_rate:
            self._probe_credit, self._probe_at, self._probe_base = 0.0, time.monotonic(), self.bytes_sent
        self._probe_rate = bitrate if self.padders else 0.0
        if self._probe_rate and not self._closed:
            now = time.monotonic()
            self._schedule(now, self._refill(now))

    def _pad(self, now: float) -> None:
        rate = self._probe_rate / 8
        self._probe_credit += (now - self._probe_at) * rate - (self.bytes_sent - self._probe_base)
        depth = max(BURST_MIN, rate * PROBE_BURST_SECONDS)
        self._probe_credit = min(depth, max(-depth, self._probe_credit))
        padded = 0
        while self._probe_credit > 0:
            # on a stream that carries media, if one does: a receiver reports on it every second (a browser says
            # nothing of a stream that gets padding alone, so a probe there would go unheard until media came back)
            size = next((size for pad in self.padders if (size := pad(True))), 0) or next(
                (size for pad in self.padders if (size := pad(False))), 0
            )
            if not size:
                break
            self._probe_credit -= size + WIRE_OVERHEAD
            padded += size + WIRE_OVERHEAD
        self.padding_sent += padded
        self.bytes_sent += padded
        self._probe_at, self._probe_base = now, self.bytes_sent

    def _schedule(self, now: float, byte_rate: float) -> None:
        if self._timer is not None:
            return
        if self._video or self._retransmissions:
            head = self._retransmissions[0] if self._retransmissions else self._video[0]
            deficit = len(head[1]) + WIRE_OVERHEAD - self._tokens
            wait = deficit / byte_rate if byte_rate > 0 else self.max_queue_delay
            if self._probe_rate:
                wait = min(wait, PROBE_INTERVAL)
        elif self._probe_rate:
            wait = PROBE_INTERVAL
        else:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(WAKE_INTERVAL, min(wait, self.max_queue_delay)), self._drain)

    def _drain(self) -> None:
        self._timer = None
        now = time.monotonic()
        byte_rate = self._refill(now)
        oldest = now - self.max_queue_delay
        stamp = abs_send_time()
        for queue in (self._retransmissions, self._video):
            while queue:
                send, data, enqueued, stamp_at = queue[0]
                size = len(data) + WIRE_OVERHEAD
                if enqueued < oldest:  # the rate fell since it was queued: too late to be of use
                    queue.popleft()
                    self._queued_bytes -= size
                    self.dropped += 1
                    continue
                if self._tokens < size:
                    break
                queue.popleft()
                self._queued_bytes -= size
                self._tokens -= size
                self.bytes_sent += size
                self.sent += 1
                send(_stamped(data, stamp_at, stamp) if stamp_at else data)
            if queue:
                break
        if self._probe_rate:
            self._pad(now)
        self._schedule(now, byte_rate)

    def close(self) -> None:
        """Drop what is queued; send nothing more."""
        self._closed = True
        self._probe_rate = 0.0
        self.padders.clear()
        self._video.clear()
        self._retransmissions.clear()
        self._queued_bytes = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _stamped(data: bytes, offset: int, value: int | None = None) -> bytes:
    stamp = abs_send_time() if value is None else value
    return data[:offset] + stamp.to_bytes(3, "big") + data[offset + 3 :]
