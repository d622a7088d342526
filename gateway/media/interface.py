"""What call control needs from the media side: rooms, and a handle on each participant of a room.

Two implementations share it: `gateway.media.local` (rooms in this process, the embedded default) and
`gateway.media.remote` (rooms in media worker processes reached over RabbitMQ). Call control never knows which one
it has. Everything crossing the interface is plain data (SDP strings, ids, flags, `SlotView`s, JSON-able dicts), so
that a remote implementation can carry it; errors are `sfu.errors`' (RoomFull, RoomClosed, SdpError,
ParticipantClosed, SfuError).

Room events (`MediaRoom.on`): ``joined`` (participant id), ``left`` (participant id, reason), ``talking``
(participant id, bool), ``muted`` (participant id, bool), ``video_changed`` () (a slot shows someone else, or is
paused or resumed, or a video source came or went: subscribers may want more slots), ``moved`` () (the media
process holding the room was lost and the room is open again, empty, in another: every participant must join it
again, by `join_*` with ``info["participant_id"]`` his id, and his old MediaParticipant is closed without a
``closed`` event; rooms in this process never move), ``closed`` ().
Participant events (`MediaParticipant.on`): ``closed`` (reason) (the media side ended him: ICE lost, kicked),
``picture_fast_update`` () (a keyframe is wanted from him and his phone may heed only a SIP INFO, RFC 5168).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sfu.errors import SfuError
from sfu.quality import MediaCounters
from sfu.settings import RoomOptions

Listener = Callable[..., Any]


class MediaUnavailable(SfuError):
    """No media worker can take the room (none announced, or the one holding it does not answer): SIP 503."""


@dataclass(frozen=True)
class SlotView:
    """One of a subscriber's video slots, as the apps are told of it: its SDP mid, whose video it shows (None:
    nobody now), what (``main``: a camera, ``slides``: a shared screen), and whether it is paused (the subscriber's
    link has no room for it now)."""

    mid: str
    owner_id: str | None
    content: str = "main"
    paused: bool = False

    def to_json(self) -> list[Any]:
        return [self.mid, self.owner_id, self.content, self.paused]

    @classmethod
    def from_json(cls, data: list[Any]) -> SlotView:
        return cls(str(data[0]), data[1], str(data[2]), bool(data[3]))


class QualityReport(Protocol):
    """A participant's call quality (sfu.quality.CallQuality, or a copy of its figures)."""

    def to_json(self) -> dict[str, Any]:
        """Now: what the calld participants API shows."""
        ...

    def summary(self) -> dict[str, Any]:
        """The whole call, for the log line as he leaves."""
        ...

    def describe(self) -> str: ...


class MediaParticipant(Protocol):
    """One participant's media (his WebRTC or plain-RTP leg) in a room."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str:
        """``webrtc`` or ``rtp``."""
        ...

    @property
    def muted(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    @property
    def wants_offer(self) -> bool:
        """Whether `create_slots_offer` has video slots to add or to announce afresh."""
        ...

    @property
    def last_received_at(self) -> float | None:
        """time.monotonic() (in this process) when his last RTP packet came, None before any (the bridge's watch)."""
        ...

    @property
    def receives_audio(self) -> bool:
        """The negotiated audio lets him send to us."""
        ...

    @property
    def quality(self) -> QualityReport: ...

    def video_slots(self) -> list[SlotView]:
        """His negotiated, active video slots and who each shows."""
        ...

    def on(self, event: str, listener: Listener) -> Any: ...

    async def create_slots_offer(self) -> str | None:
        """The SDP offer adding his missing video slots and announcing stale ones afresh; None: nothing to offer."""
        ...

    async def accept_slots_answer(self, answer: str) -> None: ...

    async def handle_offer(self, offer: str) -> str:
        """Answer his in-dialog offer (re-INVITE)."""
        ...

    async def accept_answer(self, answer: str) -> None:
        """Complete an outbound plain-RTP leg (`MediaRoom.join_rtp_outbound`) with the far end's answer."""
        ...

    def request_keyframes(self) -> None:
        """His decoders want a fresh picture: the sources his slots show are asked for a keyframe."""
        ...

    def set_muted(self, muted: bool) -> None: ...

    def toggle_mute(self) -> None: ...

    def pin(self, participant_id: str | None) -> None:
        """Keep that participant's video in one of his slots (None: back to following the speakers)."""
        ...

    async def close(self, reason: str) -> None:
        """He leaves the room; his quality holds its last figures afterwards."""
        ...


class MediaRoom(Protocol):
    """One room: participants join it with an SDP offer and get an answer."""

    @property
    def id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def participant_count(self) -> int: ...

    def set_options(self, options: RoomOptions) -> None:
        """Options for the joins from now on (the bridge's video mode may have changed)."""
        ...

    def on(self, event: str, listener: Listener) -> Any: ...

    async def join_webrtc(
        self, offer: str, info: dict[str, Any], *, max_participants: int
    ) -> tuple[MediaParticipant, str]:
        """Join with a browser's offer; the participant and the answer (``info["participant_id"]``: the id he is to
        have, when he comes back into a room that moved; a new one otherwise)."""
        ...

    async def join_rtp(
        self, offer: str, info: dict[str, Any], *, max_participants: int
    ) -> tuple[MediaParticipant, str]:
        """Join with a phone's plain-RTP (or SDES-SRTP) offer; the participant and the answer."""
        ...

    async def join_rtp_outbound(self, info: dict[str, Any], *, max_participants: int) -> tuple[MediaParticipant, str]:
        """A plain-RTP leg that makes the offer (calling Asterisk); complete it with `accept_answer`."""
        ...

    async def close(self, reason: str) -> None: ...


class MediaRooms(Protocol):
    """Where rooms live: in this process, or in media workers."""

    async def start(self) -> None: ...

    async def room(self, room_id: str, options: RoomOptions) -> MediaRoom:
        """The open room with this id, or a new one with `options` (MediaUnavailable when none can be made)."""
        ...

    def media_counters(self) -> MediaCounters:
        """What the media counted since start (each figure never lower than the last time)."""
        ...

    async def close(self) -> None:
        """Close every room (and stop talking to workers)."""
        ...
