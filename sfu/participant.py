"""A participant: one leg (WebRTC or plain RTP) in one room, with its mixer membership and video source/slots."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

from .codecs import AudioCodec
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox

if TYPE_CHECKING:
    from .room import Room


class Leg(Protocol):
    """What a participant needs from its leg (see WebRtcLeg, RtpLeg)."""

    kind: str
    inbox: AudioInbox

    @property
    def video_source(self) -> VideoSource | None: ...

    @property
    def video_sources(self) -> list[VideoSource]: ...

    @property
    def slots(self) -> list[VideoSlot]: ...

    @property
    def audio_codec(self) -> AudioCodec | None: ...

    def send_audio(self, payloads: list[bytes]) -> None: ...

    def on(self, event: str, listener: Any = None) -> Any: ...

    async def handle_offer(self, offer: str) -> str: ...

    async def close(self) -> None: ...


class Participant(EventEmitter):
    """Events: ``closed`` (reason), ``muted`` (bool), ``talking`` (bool), ``dtmf`` (digit str),
    ``picture_fast_update`` () (a keyframe is wanted from him and his phone may heed only a SIP INFO, RFC 5168).

    `info` is whatever the caller attached at join (name, number, SIP Call-ID...); the media layer does not read it.
    """

    def __init__(self, participant_id: str, room: Room, leg: Leg, info: dict[str, Any]) -> None:
        super().__init__()
        self.id = participant_id
        self.room = room
        self.leg = leg
        self.info = info
        self.joined_at = time.time()
        self.muted = False
        self.talking = False
        #: the participant whose video this one wants in a slot whoever speaks (a pinned tile), or None
        self.pinned: str | None = None
        self.closed = False
        self.close_reason: str | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def kind(self) -> str:
        """``webrtc`` or ``rtp``."""
        return self.leg.kind

    @property
    def video_source(self) -> VideoSource | None:
        return self.leg.video_source

    @property
    def video_sources(self) -> list[VideoSource]:
        """Every video the participant sends: one camera, or several streams (an Asterisk ConfBridge in SFU mode)."""
        return self.leg.video_sources

    @property
    def slots(self) -> list[VideoSlot]:
        return self.leg.slots

    def __repr__(self) -> str:
        return f"Participant({self.id!r}, {self.kind}, room={self.room.id!r})"

    # video slots (WebRTC): one re-offer after the initial answer

    @property
    def slot_count(self) -> int:
        """How many video slots `create_slots_offer` adds (0: nothing to offer)."""
        if self.leg.kind != "webrtc" or not self.room.options.video:
            return 0
        return max(0, self.room.options.last_n)

    async def create_slots_offer(self) -> str:
        """The SDP offer adding this participant's video slots; send it (re-INVITE) after the ACK of the join."""
        self._check_open()
        count = self.slot_count
        if count == 0:
            raise SdpError("no video slots for this participant (audio only, or not a WebRTC leg)")
        create = getattr(self.leg, "create_slots_offer", None)
        assert create is not None
        # Ask the sources these slots will show for a keyframe now: it arrives while the offer and its answer travel,
        # and the slots start from it (VideoSource keeps it) as soon as they are accepted, instead of asking then.
        others = (self.room.participants.get(p) for p in self.room.recent_speakers if p != self.id)
        sources = [other.video_source for other in others if other is not None and other.video_source is not None]
        for source in sources[:count]:
            source.request_keyframe()
        offer: str = await create(count)
        return offer

    async def accept_slots_answer(self, answer: str) -> None:
        """Apply the answer to `create_slots_offer`'s offer; the slots then show the most recent speakers."""
        self._check_open()
        accept = getattr(self.leg, "accept_slots_answer", None)
        assert accept is not None
        await accept(answer)
        self.room._update_video()

    async def handle_offer(self, offer: str) -> str:
        """Answer an offer the participant sends in-dialog (re-INVITE); streams that cannot be used are refused."""
        self._check_open()
        answer = await self.leg.handle_offer(offer)
        self.room._update_video()
        return answer

    def request_keyframes(self) -> None:
        """The participant's decoders want a fresh picture: ask the sources his slots show (or switch to)."""
        for slot in self.slots:
            slot.on_keyframe_request()

    # video

    def pin(self, participant_id: str | None) -> None:
        """Keep `participant_id`'s video in one of this participant's slots (None: back to the speakers)."""
        if participant_id == self.id or participant_id == self.pinned:
            return
        self.pinned = participant_id
        self.room._update_video()

    # audio

    def set_muted(self, muted: bool) -> None:
        """A muted participant is not mixed (and not decoded); he still hears the room."""
        if self.closed or muted == self.muted:
            return
        self.muted = muted
        self.room.mixer.set_muted(self.id, muted)
        self.emit("muted", muted)
        self.room.emit("participant_muted", self, muted)

    def mute(self) -> None:
        self.set_muted(True)

    def unmute(self) -> None:
        self.set_muted(False)

    def toggle_mute(self) -> None:
        self.set_muted(not self.muted)

    def _on_dtmf(self, digit: str) -> None:
        if digit == "1":
            self.toggle_mute()
        self.emit("dtmf", digit)
        self.room.emit("dtmf", self, digit)

    # lifecycle

    def _check_open(self) -> None:
        if self.closed:
            raise ParticipantClosed(f"participant {self.id} has left")

    async def close(self, reason: str = "left") -> None:
        """Leave the room: the leg (peer connection or socket), its tasks and its video are released."""
        if self._closing is not None:
            await self._closing
            return
        self._closing = asyncio.get_running_loop().create_future()
        self.closed = True
        self.close_reason = reason
        try:
            self.room._detach(self)
            await self.leg.close()
        finally:
            self._closing.set_result(None)
        self.emit("closed", reason)
        self.room._participant_closed(self, reason)
        self.remove_all_listeners()
