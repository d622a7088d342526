"""Packet-level video forwarding: publishers' RTP packets go, one by one, to the subscriber slots showing them.

A `VideoSource` is one publisher's video: the RTP packets its leg receives (never reassembled, never decoded),
each parsed once into a `MediaPacket`. A `VideoSlot` is one video stream sent to a subscriber; it forwards its
source's packets through its `SlotSender` (sfu/rtpsender.py: header rewrite, history, one send). A slot switches
source without a broken picture: it keeps forwarding the previous source until the new one's keyframe starts
(asked for at once) and the previous source's frame in progress has ended (a receiver given the first half of a
frame followed by another stream's keyframe may try to decode the half), then replays the new source's packets from
that keyframe; the rewrite keeps sequence numbers, timestamps and VP8 picture IDs continuous.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from .rtprewriter import MediaPacket, seq_newer, vp8_resolution

logger = logging.getLogger(__name__)

#: a keyframe request is sent upstream at most this often per source, whatever the number of subscribers asking
#: (requests meanwhile are merged into one, sent when the interval ends unless a keyframe came first); each
#: subscriber's own requests are held to one a second before they get here (sfu/keyframerequests.py)
KEYFRAME_REQUEST_INTERVAL = 0.5
#: a pending switch asks again for a keyframe after this long
PENDING_RETRY = 1.0
#: a source keeps the packets since its latest keyframe for this long (at most this many packets), so that a slot
#: assigned to it soon after (a newcomer's, whose keyframe was asked for while its slots were being negotiated)
#: starts at once from them instead of asking for a keyframe and waiting for it
RECENT_KEYFRAME_AGE = 1.5
RECENT_PACKETS_LIMIT = 600
#: a switch whose keyframe has come waits at most this long for the current source's frame to end
FRAME_END_WAIT = 0.2


class PacketSink(Protocol):
    """Where a slot's packets go: a `SlotSender`."""

    def forward(self, source: object, packet: MediaPacket) -> bool:
        """False when the receiver has had nothing yet and this packet did not reach it either."""
        ...

    def connected(self) -> bool:
        """Whether packets can reach the receiver now."""
        ...

    def restart(self) -> None: ...

    def request_keyframe(self) -> None:
        """Ask the source for a keyframe on the receiver's behalf (through its keyframe-request gate)."""
        ...


class VideoSource:
    """One publisher's video, fanned out packet by packet to the slots currently showing it (or waiting to)."""

    def __init__(
        self, owner_id: str, codec_name: str, request_keyframe: Callable[[], None], content: str = "main"
    ) -> None:
        self.owner_id = owner_id
        self.codec_name = codec_name.upper()
        #: RFC 4796's content of the stream: "main" (a camera) or "slides" (a shared screen, shown to everyone first)
        self.content = content
        self.slots: set[VideoSlot] = set()
        self.packets = 0
        #: payload bytes received
        self.octets = 0
        self.frames = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        #: payload bytes of the latest keyframe (a slot that shows the source must have room for that burst)
        self.keyframe_octets = 0
        self.closed = False
        #: (width, height) of the latest keyframe, when its header says (VP8)
        self.resolution: tuple[int, int] | None = None
        #: the publisher's latest sender report: (local monotonic time it arrived, its RTP timestamp)
        self.sender_report: tuple[float, int] | None = None
        #: called once, after the first frame: the room shows a source only once it has something to show
        self.on_first_frame: Callable[[], None] | None = None
        self._request_keyframe = request_keyframe
        self._last_request = -1e9
        self._request_waiting = False  # asked within the interval: sent when it ends
        self._recent: list[MediaPacket] = []  # the latest keyframe's packets and those after it
        self._recent_at = 0.0
        self._picture_id7: int | None = None  # a 7-bit picture ID source, unwrapped to 15 bits
        self._picture_id15 = 0
        self._highest: int | None = None
        self._ssrc: int | None = None

    def on_packet(self, packet: MediaPacket) -> None:
        """A video packet from the publisher (payload type already that of the source's codec)."""
        self.packets += 1
        self.octets += packet.payload_end - packet.payload_start
        if packet.ssrc != self._ssrc:  # a new sender (a restarted phone): its numbering starts afresh
            self._ssrc, self._highest, self._picture_id7 = packet.ssrc, None, None
        vp8 = packet.vp8
        if vp8 is not None and vp8.picture_id_bits == 7:
            self._unwrap_picture_id(packet)
        recent = self._recent
        if (
            packet.keyframe
            # the keyframe's later packets (an H.264 IDR after its SPS), or one of its packets resent, do not restart it
            and not (recent and recent[0].timestamp == packet.timestamp and recent[0].ssrc == packet.ssrc)
            and (self._highest is None or not seq_newer(self._highest, packet.sequence))
        ):
            self.keyframes += 1
            if vp8 is not None:
                self.resolution = (
                    vp8_resolution(packet.data, packet.payload_start + vp8.length, packet.payload_end)
                    or self.resolution
                )
            self._recent = [packet]
            self._recent_at = packet.arrival
            self._request_waiting = False
            self.keyframe_octets = packet.payload_end - packet.payload_start
        elif self._request_waiting and time.monotonic() - self._last_request >= KEYFRAME_REQUEST_INTERVAL:
            self._send_keyframe_request()
        elif recent:
            if packet.timestamp == recent[0].timestamp:
                self.keyframe_octets += packet.payload_end - packet.payload_start
            if len(self._recent) < RECENT_PACKETS_LIMIT and packet.arrival - self._recent_at < RECENT_KEYFRAME_AGE:
                self._recent.append(packet)
            else:
                self._recent = []
        if self._highest is None or seq_newer(packet.sequence, self._highest):
            self._highest = packet.sequence
        for slot in list(self.slots):
            slot.on_packet(self, packet)
        if packet.marker:
            self.frames += 1
            if self.frames == 1 and self.on_first_frame is not None:
                # after the slots had it: slots assigned now start from the recent packets, this one included
                self.on_first_frame()

    def _unwrap_picture_id(self, packet: MediaPacket) -> None:
        vp8 = packet.vp8
        assert vp8 is not None
        if self._picture_id7 is not None:
            step = (vp8.picture_id - self._picture_id7) & 0x7F
            if step < 0x40:
                self._picture_id15 = (self._picture_id15 + step) & 0x7FFF
                self._picture_id7 = vp8.picture_id
            else:  # an older packet (reordered or retransmitted)
                vp8.picture_id = (self._picture_id15 - ((self._picture_id7 - vp8.picture_id) & 0x7F)) & 0x7FFF
                vp8.picture_id_bits = 15
                return
        else:
            self._picture_id7 = vp8.picture_id
            self._picture_id15 = vp8.picture_id
        vp8.picture_id = self._picture_id15
        vp8.picture_id_bits = 15

    def lost_packets(self) -> None:
        """Packets were lost on the way and will not be sent again (a publisher that does not answer NACKs): the
        slots showing it skip to its next keyframe, asked for now, and go on from there without a gap (a receiver
        would wait for packets that never come, or decode a broken picture)."""
        self._recent = []
        for slot in list(self.slots):
            slot.source_lost_packets(self)
        self.request_keyframe()

    def recent_packets(self) -> list[MediaPacket]:
        """The latest keyframe's packets and those after it, if it is recent (else nothing)."""
        if self._recent and time.monotonic() - self._recent_at < RECENT_KEYFRAME_AGE:
            return list(self._recent)
        return []

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per `KEYFRAME_REQUEST_INTERVAL` (asked again sooner: when
        it ends, with the first packet after it, unless a keyframe came meanwhile)."""
        if self.closed:
            return
        if time.monotonic() - self._last_request < KEYFRAME_REQUEST_INTERVAL:
            self._request_waiting = True
            return
        self._send_keyframe_request()

    def _send_keyframe_request(self) -> None:
        self._last_request = time.monotonic()
        self._request_waiting = False
        self.keyframe_requests += 1
        self._request_keyframe()

    def close(self) -> None:
        self.closed = True
        self._recent = []
        for slot in list(self.slots):
            slot.source_closed(self)
        self.slots.clear()


class VideoSlot:
    """One video stream sent to a subscriber, showing one source at a time."""

    def __init__(self, index: int, mid: str | None, codec_name: str | None = None) -> None:
        self.index = index
        self.mid = mid
        self.codec_name = codec_name.upper() if codec_name else None
        #: set by the leg once the slot's stream is negotiated
        self.sender: PacketSink | None = None
        self.current: VideoSource | None = None
        self.pending: VideoSource | None = None
        self.active = False
        #: the participant whose video the slot was announced with (its m-line's `a=label`, as Asterisk's ConfBridge
        #: labels each stream with its source's channel): the room shows that participant in it when it can
        self.label: str | None = None
        #: how many times it was announced (its msid changes each time, so that the receiver sees a new stream)
        self.announcements = 0
        self.forwarded = 0
        self.switches = 0
        #: forwarding stopped because the subscriber's bandwidth does not fit it (sfu/allocation.py), since when
        self.paused = False
        self.paused_at = 0.0
        self._waiting_keyframe = True
        self._restart = False
        self._pending_since = 0.0
        #: the pending source's keyframe has come (its packets since are in its recent packets), since when
        self._pending_ready_at: float | None = None
        #: the last packet sent did not end its frame
        self._frame_open = False
        #: nothing reached the subscriber yet, its path not being connected: the pending source waits for it
        self._await_connection = False

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
            self._pending_ready_at = None
        if source is None:
            if self.current is not None:
                self.current.slots.discard(self)
            self.current = None
            return
        if source is self.current:
            return
        source.slots.add(self)
        self.pending = source
        self._pending_since = time.monotonic()
        if self.paused:
            return  # shown once it resumes (from a keyframe then)
        if source.recent_packets():
            # a keyframe came moments ago: start from it as soon as the current frame has ended
            self._pending_ready_at = self._pending_since
            self._switch_when_frame_ended()
            return
        source.request_keyframe()

    def _switch_when_frame_ended(self, keyframe: MediaPacket | None = None) -> None:
        """Switch to the pending source, whose keyframe has come, unless the current source is in the middle of a
        frame (and has not been for too long): then at the end of that frame. `keyframe`: the packet that just
        came, when it starts a keyframe (the start whatever the source kept)."""
        source, ready_at = self.pending, self._pending_ready_at
        assert source is not None and ready_at is not None
        if self._frame_open and self.current is not None and time.monotonic() - ready_at < FRAME_END_WAIT:
            return
        recent = source.recent_packets() or ([keyframe] if keyframe is not None else [])
        if not recent:  # its keyframe is gone from memory (lost packets since, or too old): ask for another
            self._pending_ready_at = None
            self._pending_since = time.monotonic()
            source.request_keyframe()
            return
        if self.current is not None and self.current is not source:
            self.current.slots.discard(self)
        self.current, self.pending, self._pending_ready_at = source, None, None
        self.switches += 1
        self._waiting_keyframe = False
        for packet in recent:
            self._send(source, packet)
            if self.current is not source:  # it could not be sent
                return

    def on_packet(self, source: VideoSource, packet: MediaPacket) -> None:
        if self.paused:
            self._follow_while_paused(source)
            return
        if source is self.pending:
            if self._await_connection:
                if self.sender is None or not self.sender.connected():
                    return
                self._await_connection = False
                self.sender.restart()
                if source.recent_packets():
                    self._pending_ready_at = time.monotonic()
                    self._switch_when_frame_ended()
                    return
                self._pending_since = -PENDING_RETRY  # ask for a keyframe now
            if self._pending_ready_at is None:
                if not packet.keyframe:
                    if time.monotonic() - self._pending_since > PENDING_RETRY:
                        self._pending_since = time.monotonic()
                        source.request_keyframe()
                    return
                self._pending_ready_at = time.monotonic()
                # the packet is among the source's recent packets, replayed at the switch
                self._switch_when_frame_ended(packet)
                return
            self._switch_when_frame_ended()
            return
        if source is not self.current:
            source.slots.discard(self)
            return
        elif self._waiting_keyframe:
            if not packet.keyframe:
                source.request_keyframe()
                return
            self._waiting_keyframe = False
            if self._restart and self.sender is not None:
                self.sender.restart()
            self._restart = False
        self._send(source, packet)
        if packet.marker and self.pending is not None and self._pending_ready_at is not None:
            self._switch_when_frame_ended()

    def _send(self, source: VideoSource, packet: MediaPacket) -> None:
        sender = self.sender
        if sender is None or self.paused:
            return
        if not sender.forward(source, packet):
            # the subscriber's path is not connected yet: once it is, start again from a keyframe (what follows one
            # is of no use to a decoder that never had it); no keyframe is asked for until then
            self.current, self.pending = None, source
            self._pending_ready_at = None
            self._await_connection = True
            return
        self.forwarded += 1
        self._frame_open = not packet.marker

    def _follow_while_paused(self, source: VideoSource) -> None:
        """Nothing is sent, nor any keyframe asked for: a switch completes at once (resuming starts from a keyframe
        anyway)."""
        if source is self.pending:
            if self.current is not None:
                self.current.slots.discard(self)
            self.current, self.pending, self._pending_ready_at = source, None, None
            self.switches += 1
        elif source is not self.current:
            source.slots.discard(self)

    def set_paused(self, paused: bool) -> bool:
        """Stop forwarding (the subscriber's link has no room for it), or start again: from a keyframe, the one the
        source is sending now if nothing followed it yet (a keyframe and what followed would come as one burst, most
        of which the subscriber's pacer would drop), else one asked for through the subscriber's keyframe-request
        gate; the stream goes on without a gap in its numbering. True when that changed something."""
        if paused == self.paused:
            return False
        self.paused = paused
        if paused:
            self.paused_at = time.monotonic()
            return True
        source = self.current
        if source is None or self.sender is None:
            return True
        self._waiting_keyframe = True
        self._restart = True
        recent = source.recent_packets()
        if recent and all(packet.timestamp == recent[0].timestamp for packet in recent):
            self.sender.restart()
            self._waiting_keyframe = self._restart = False
            self._frame_open = False
            for packet in recent:
                self._send(source, packet)
        else:
            self.sender.request_keyframe()
        return True

    def on_keyframe_request(self) -> None:
        """The subscriber sent PLI or FIR: pass it on to the publisher being shown (or switched to)."""
        source = self.target
        if source is not None:
            source.request_keyframe()

    def source_lost_packets(self, source: VideoSource) -> None:
        if source is self.current:
            self._waiting_keyframe = True
            self._restart = True

    def source_closed(self, source: VideoSource) -> None:
        # the last picture stays on screen until another source's keyframe arrives
        if source is self.pending:
            self.pending = None
            self._pending_ready_at = None
        if source is self.current:
            self.current = None
            self._frame_open = False
            self._waiting_keyframe = True

    def close(self) -> None:
        self.assign(None)
        self.active = False
        self.sender = None
