"""A participant: one leg (WebRTC or plain RTP) in one room, with its mixer membership and video source/slots."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from .codecs import AudioCodec
from .errors import ParticipantClosed, SdpError
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioInbox
from .pacer import Pacer
from .quality import CallQuality, LinkState, MediaCounters

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)


class Leg(Protocol):
    """What a participant needs from its leg (see WebRtcLeg, RtpLeg)."""

    kind: str
    inbox: AudioInbox
    #: the participant's bandwidth estimate and the pacer his video goes through
    pacer: Pacer

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

    def media_counters(self) -> MediaCounters:
        """What the leg counted so far (cheap: read at every /metrics scrape)."""
        ...

    async def link_state(self) -> LinkState:
        """The counters with the receiver reports, round trip and resolutions (for the call quality)."""
        ...

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
        #: his media quality over the call (the room samples it; sampled a last time as he leaves)
        self.quality = CallQuality(time.monotonic())
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

    # video slots (WebRTC): added by re-offers after the initial answer, as other video sources come

    @property
    def slot_count(self) -> int:
        """How many video slots this participant should have: one per video source of the others, at most the
        room's last-N (0: not a WebRTC leg, or an audio-only room)."""
        if self.leg.kind != "webrtc" or not self.room.options.video:
            return 0
        return min(max(0, self.room.options.last_n), self.room.video_source_count(excluding=self.id))

    @property
    def missing_slots(self) -> int:
        """How many slots `create_slots_offer` adds now (0: nothing to offer). A slot the participant refused still
        counts as one he has."""
        return max(0, self.slot_count - len(self.slots))

    @property
    def stale_slots(self) -> list[VideoSlot]:
        """Slots that show someone other than the participant they were announced for, who has left (or has no
        video any more): the next offer announces each for whom it shows. (A slot that follows the speakers
        among people still there keeps its label: relabelling on every switch would renegotiate without end.)"""
        if self.leg.kind != "webrtc":
            return []  # a phone's slot comes with its own m-line, in its answer: nothing to announce
        present = {p.id for p in self.room.participants.values() if p.video_sources}
        return [
            slot
            for slot in self.slots
            if slot.active
            and slot.target is not None
            and slot.label != slot.target.owner_id
            and slot.label not in present
        ]

    @property
    def wants_offer(self) -> bool:
        """Whether `create_slots_offer` has something to offer: slots to add, or slots to announce afresh."""
        return self.missing_slots > 0 or bool(self.stale_slots)

    async def create_slots_offer(self) -> str:
        """The SDP offer adding the missing video slots and announcing the stale ones afresh; send it (re-INVITE)
        after the ACK of the join. Each slot is labelled with the participant whose video it is meant for."""
        self._check_open()
        count = self.missing_slots
        stale = self.stale_slots
        if count == 0 and not stale:
            raise SdpError("no video slots to add or announce for this participant")
        create = getattr(self.leg, "create_slots_offer", None)
        assert create is not None
        planned = self.room.plan_slots(self, count)
        # Ask the sources these slots will show for a keyframe now: it arrives while the offer and its answer travel,
        # and the slots start from it (VideoSource keeps it) as soon as they are accepted, instead of asking then.
        for source in planned:
            if source is not None:
                source.request_keyframe()
        labels = [source.owner_id if source is not None else None for source in planned]
        relabels = [(slot, slot.target.owner_id) for slot in stale if slot.target is not None]
        offer: str = await create(labels, relabels)
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

    # call quality

    async def sample_quality(self) -> None:
        """Read the leg's figures into `quality`."""
        try:
            state = await self.leg.link_state()
        except Exception:
            logger.exception("%s: call quality not read", self.id)
            return
        self.quality.sample(state, time.monotonic())

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
            await self.sample_quality()  # the last figures, while the leg is still up
            self.room._detach(self)
            await self.leg.close()
        finally:
            self._closing.set_result(None)
        self.emit("closed", reason)
        self.room._participant_closed(self, reason)
        self.remove_all_listeners()
