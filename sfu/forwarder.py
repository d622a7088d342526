"""Video forwarding without transcoding: publishers' encoded frames go to subscribers' video slots.

A `VideoSource` is one publisher's video (the receiver's reassembled encoded frames, never decoded). A `VideoSlot`
is one sendonly video stream of one subscriber; its `EncodedTrack` hands `av.Packet`s to aiortc's sender, which only
packetises them. A slot switches source without a broken picture: it keeps forwarding the previous source until the
new one sends a keyframe (asked for at once), and it rewrites timestamps so they stay continuous.
"""

from __future__ import annotations

import fractions
import logging
import time
from collections.abc import Callable

import av

from .codecs import is_keyframe
from .packettrack import EncodedTrack

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
#: a keyframe request is sent upstream at most this often per source
KEYFRAME_REQUEST_INTERVAL = 0.3
#: a pending switch asks again for a keyframe after this long
PENDING_RETRY = 1.0
#: frames queued on a slot before it gives up on them and waits for the next keyframe
SLOT_QUEUE_LIMIT = 60
#: timestamp step inserted when a slot switches source (one frame at 30 fps)
SWITCH_STEP = 3000
#: a source keeps the frames since its latest keyframe for this long (at most this many frames), so that a slot
#: assigned to it soon after (a newcomer's, whose keyframe was asked for while its slots were being negotiated)
#: starts at once from them instead of asking for a keyframe and waiting for it
RECENT_KEYFRAME_AGE = 1.5
RECENT_FRAMES_LIMIT = 45


class VideoSource:
    """One publisher's video, fanned out to the slots currently showing it (or waiting to)."""

    def __init__(self, owner_id: str, codec_name: str, request_keyframe: Callable[[], None]) -> None:
        self.owner_id = owner_id
        self.codec_name = codec_name.upper()
        self.slots: set[VideoSlot] = set()
        self.frames = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self.closed = False
        #: called once, after the first frame: the room shows a source only once it has something to show
        self.on_first_frame: Callable[[], None] | None = None
        self._request_keyframe = request_keyframe
        self._last_request = -1e9
        self._recent: list[tuple[bytes, int]] = []  # the latest keyframe and the frames after it
        self._recent_at = 0.0

    def on_frame(self, codec_name: str, data: bytes, timestamp: int) -> None:
        """An encoded frame from the publisher (depayloaded, RTP timestamp at 90 kHz)."""
        self.codec_name = codec_name.upper()
        self.frames += 1
        keyframe = is_keyframe(self.codec_name, data)
        if keyframe:
            self.keyframes += 1
            self._recent = [(data, timestamp)]
            self._recent_at = time.monotonic()
        elif self._recent:
            if len(self._recent) < RECENT_FRAMES_LIMIT and time.monotonic() - self._recent_at < RECENT_KEYFRAME_AGE:
                self._recent.append((data, timestamp))
            else:
                self._recent = []
        for slot in list(self.slots):
            slot.on_frame(self, data, timestamp, keyframe)
        if self.frames == 1 and self.on_first_frame is not None:
            # after the slots had it: slots assigned now start from the recent frames, this one included
            self.on_first_frame()

    def recent_frames(self) -> list[tuple[bytes, int]]:
        """The latest keyframe and the frames after it, if it is recent (else nothing)."""
        if self._recent and time.monotonic() - self._recent_at < RECENT_KEYFRAME_AGE:
            return list(self._recent)
        return []

    def request_keyframe(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_request < KEYFRAME_REQUEST_INTERVAL:
            return
        self._last_request = now
        self.keyframe_requests += 1
        self._request_keyframe()

    def close(self) -> None:
        self.closed = True
        for slot in list(self.slots):
            slot.source_closed(self)
        self.slots.clear()


class VideoSlot:
    """One video stream sent to a subscriber, showing one source at a time."""

    def __init__(self, index: int, mid: str | None, codec_name: str | None = None) -> None:
        self.index = index
        self.mid = mid
        self.codec_name = codec_name.upper() if codec_name else None
        self.track = EncodedTrack("video")
        self.current: VideoSource | None = None
        self.pending: VideoSource | None = None
        self.active = False
        self.forwarded = 0
        self.switches = 0
        self._waiting_keyframe = True
        self._pending_since = 0.0
        self._offset = 0
        self._last_out: int | None = None
        self._last_in: int | None = None

    @property
    def target(self) -> VideoSource | None:
        """The source this slot shows, or is switching to."""
        return self.pending or self.current

    def accepts(self, source: VideoSource) -> bool:
        return self.active and (self.codec_name is None or self.codec_name == source.codec_name)

    def assign(self, source: VideoSource | None) -> None:
        """Show `source` from its next keyframe on; until then keep showing the current source."""
        if source is self.target:
            return
        if self.pending is not None:
            self.pending.slots.discard(self)
            self.pending = None
        if source is None:
            if self.current is not None:
                self.current.slots.discard(self)
            self.current = None
            return
        if source is self.current:
            return
        source.slots.add(self)
        recent = source.recent_frames()
        if recent:
            # a keyframe came moments ago: start from it now
            self._switch_to(source)
            for data, timestamp in recent:
                self._send(data, timestamp)
            return
        self.pending = source
        self._pending_since = time.monotonic()
        source.request_keyframe(force=True)

    def _switch_to(self, source: VideoSource) -> None:
        if self.current is not None and self.current is not source:
            self.current.slots.discard(self)
        self.current, self.pending = source, None
        self.switches += 1
        self._waiting_keyframe = False
        self._last_in = None

    def on_frame(self, source: VideoSource, data: bytes, timestamp: int, keyframe: bool) -> None:
        if source is self.pending:
            if not keyframe:
                if time.monotonic() - self._pending_since > PENDING_RETRY:
                    self._pending_since = time.monotonic()
                    source.request_keyframe()
                return
            self._switch_to(source)
        elif source is not self.current:
            source.slots.discard(self)
            return
        elif self._waiting_keyframe:
            if not keyframe:
                source.request_keyframe()
                return
            self._waiting_keyframe = False
        self._send(data, timestamp)

    def _send(self, data: bytes, timestamp: int) -> None:
        if self._last_in is None:
            # new source: continue the outgoing timeline one frame after the last frame sent
            start = 0 if self._last_out is None else self._last_out + SWITCH_STEP
            self._offset = start - timestamp
        self._last_in = timestamp
        out = timestamp + self._offset
        self._last_out = out
        if self.track.queue.qsize() >= SLOT_QUEUE_LIMIT:
            # the subscriber's sender is not keeping up: drop what is queued, restart from a keyframe
            while not self.track.queue.empty():
                self.track.queue.get_nowait()
            self._waiting_keyframe = True
            if self.current is not None:
                self.current.request_keyframe()
            return
        packet = av.Packet(data)
        packet.pts = out
        packet.time_base = VIDEO_TIME_BASE
        self.track.queue.put_nowait(packet)
        self.forwarded += 1

    def on_keyframe_request(self) -> None:
        """The subscriber sent PLI or FIR: pass it on to the publisher being shown (or switched to)."""
        source = self.target
        if source is not None:
            source.request_keyframe()

    def source_closed(self, source: VideoSource) -> None:
        # the last picture stays on screen until another source's keyframe arrives
        if source is self.pending:
            self.pending = None
        if source is self.current:
            self.current = None
            self._last_in = None
            self._waiting_keyframe = True

    def close(self) -> None:
        self.assign(None)
        self.active = False
        self.track.stop()
