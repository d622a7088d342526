"""A room: participants, one audio mixer, and the video selection (last-N most recent speakers per subscriber)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .allocation import INTERVAL as ALLOCATION_INTERVAL
from .allocation import BandwidthAllocator
from .errors import RoomClosed, RoomFull
from .events import EventEmitter
from .forwarder import VideoSlot, VideoSource
from .mixer import AudioMixer
from .participant import Leg, Participant
from .ports import PortAllocator
from .quality import SAMPLE_SECONDS, MediaCounters
from .rtpleg import RtpLeg
from .settings import MediaSettings, RoomOptions
from .webrtcleg import WebRtcLeg

logger = logging.getLogger(__name__)


class Room(EventEmitter):
    """Events: ``participant_joined`` (p), ``participant_left`` (p, reason), ``talking_started`` (p),
    ``talking_stopped`` (p), ``participant_muted`` (p, muted), ``dtmf`` (p, digit), ``video_changed`` () (a slot
    was pointed at another source), ``video_sources_changed`` () (a video source came or went: subscribers may
    want more slots, `Participant.missing_slots`), ``video_paused`` (p) (one of p's slots was paused or resumed:
    his link has no room for it, or room again; `VideoSlot.paused`), ``closed`` ().
    """

    def __init__(
        self, room_id: str, settings: MediaSettings, options: RoomOptions, ports: PortAllocator | None = None
    ) -> None:
        super().__init__()
        self.id = room_id
        self.settings = settings
        self.options = options
        self.max_participants = options.max_participants
        self.ports = ports
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self.mixer = AudioMixer(
            mixed_speakers=options.mixed_speakers,
            speech_level=options.speech_level,
            talk_start_ms=options.talk_start_ms,
            talk_stop_ms=options.talk_stop_ms,
            on_talking=self._on_talking,
        )
        #: participant ids, most recent talker first (joiners go to the end)
        self.recent_speakers: list[str] = []
        self._ids = itertools.count(1)
        self._joining = 0
        self._source_count = 0
        #: what the participants who left counted
        self.retired = MediaCounters()
        self._sampler: asyncio.Task[None] | None = None
        #: each subscriber's bandwidth shared out among his slots (sfu/allocation.py)
        self.allocator = BandwidthAllocator()
        self._allocating: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Room({self.id!r}, {len(self.participants)} participants)"

    @property
    def is_full(self) -> bool:
        return len(self.participants) + self._joining >= self.max_participants

    # joining

    async def join_webrtc(
        self, offer: str, info: dict[str, Any] | None = None, *, max_participants: int | None = None
    ) -> tuple[Participant, str]:
        """Join with a browser's SDP offer; returns the participant and the SDP answer.

        Raises RoomFull (cap reached), RoomClosed, SdpError (unusable offer: SIP 488).
        """

        def make_leg(participant_id: str) -> WebRtcLeg:
            return WebRtcLeg(participant_id, self.settings, self.ports, self.options.video_codecs, self.options.video)

        return await self._join(make_leg, lambda leg: leg.answer(offer), info, max_participants)

    async def join_rtp(
        self, offer: str, info: dict[str, Any] | None = None, *, max_participants: int | None = None
    ) -> tuple[Participant, str]:
        """Join with a SIP phone's plain-RTP SDP offer; returns the participant and the SDP answer."""
        return await self._join(self._rtp_leg, lambda leg: leg.answer(offer), info, max_participants)

    async def join_rtp_outbound(
        self, info: dict[str, Any] | None = None, *, max_participants: int | None = None
    ) -> tuple[Participant, str]:
        """Create a plain-RTP leg that makes the offer (calling out, e.g. to Asterisk); returns it and the offer.

        Complete it with ``participant.leg.accept_answer(answer)``.
        """
        return await self._join(self._rtp_leg, lambda leg: leg.create_offer(), info, max_participants)

    def _rtp_leg(self, participant_id: str) -> RtpLeg:
        video = self.options.video_codecs if self.options.video else ()
        return RtpLeg(participant_id, self.settings, self.ports, video, max_received_video=self.options.last_n)

    async def _join(
        self,
        make_leg: Callable[[str], Any],
        negotiate: Callable[[Any], Awaitable[str]],
        info: dict[str, Any] | None,
        max_participants: int | None,
    ) -> tuple[Participant, str]:
        if self.closed:
            raise RoomClosed(f"room {self.id} is closed")
        if max_participants is not None:
            self.max_participants = max_participants
        if self.is_full:
            raise RoomFull(self.id, self.max_participants)
        # a participant moved here from another media process keeps the id he had there
        participant_id = str((info or {}).get("participant_id") or f"{self.id}-{next(self._ids)}")
        leg = make_leg(participant_id)
        self._joining += 1
        try:
            sdp = await negotiate(leg)
        except BaseException:
            await leg.close()
            raise
        finally:
            self._joining -= 1
        if self.closed:
            await leg.close()
            raise RoomClosed(f"room {self.id} is closed")
        participant = Participant(participant_id, self, leg, dict(info or {}))
        self._attach(participant, leg)
        return participant, sdp

    def _attach(self, participant: Participant, leg: Leg) -> None:
        self.participants[participant.id] = participant
        self.recent_speakers.append(participant.id)
        self.mixer.add(participant.id, leg.inbox, leg)
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_quality(), name="sfu-quality")
        if self._allocating is None and self.options.video:
            self._allocating = asyncio.get_running_loop().create_task(self._allocate_bandwidth(), name="sfu-allocation")
        leg.on("disconnected", lambda *_: self._spawn(participant.close("disconnected")))
        leg.on("dtmf", participant._on_dtmf)
        leg.on("picture_fast_update", lambda: participant.emit("picture_fast_update"))
        self.emit("participant_joined", participant)
        self._update_video()

    def _spawn(self, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            await awaitable

        asyncio.get_running_loop().create_task(run())

    def _detach(self, participant: Participant) -> None:
        """First step of a participant's close: out of the mix and of everyone's video."""
        self.mixer.remove(participant.id)
        if participant.id in self.recent_speakers:
            self.recent_speakers.remove(participant.id)

    def _participant_closed(self, participant: Participant, reason: str) -> None:
        if self.participants.pop(participant.id, None) is not None:
            self.allocator.forget(participant.leg.pacer)
            self.retired.add(participant.leg.media_counters())
            self.emit("participant_left", participant, reason)
            self._update_video()

    # control

    def get(self, participant_id: str) -> Participant | None:
        return self.participants.get(participant_id)

    async def kick(self, participant_id: str) -> None:
        participant = self.participants.get(participant_id)
        if participant is not None:
            await participant.close("kicked")

    def mute(self, participant_id: str, muted: bool = True) -> None:
        participant = self.participants.get(participant_id)
        if participant is not None:
            participant.set_muted(muted)

    async def close(self, reason: str = "room closed") -> None:
        """Close every participant (their legs, sockets and tasks), then the mixer."""
        if self.closed:
            return
        self.closed = True
        await asyncio.gather(*(p.close(reason) for p in list(self.participants.values())), return_exceptions=True)
        for task in (self._sampler, self._allocating):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.mixer.close()
        self.emit("closed")
        self.remove_all_listeners()

    # call quality

    async def _sample_quality(self) -> None:
        """Every participant's call quality, every `SAMPLE_SECONDS`."""
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            for participant in list(self.participants.values()):
                if not participant.closed:
                    await participant.sample_quality()

    async def _allocate_bandwidth(self) -> None:
        while True:
            await asyncio.sleep(ALLOCATION_INTERVAL)
            self.allocate_bandwidth()

    def allocate_bandwidth(self) -> None:
        """Each subscriber's slots, the active speaker's first (his pinned participant's before), given what his
        link takes: those that do not fit are paused (sfu/allocation.py)."""
        sources = self._video_sources(shown_only=False)
        now = time.monotonic()
        self.allocator.measure(sources, now)
        for subscriber in list(self.participants.values()):
            if subscriber.closed or not subscriber.slots:
                continue
            rank = {source: index for index, source in enumerate(self._ordered_for(subscriber, sources))}
            slots = sorted(subscriber.slots, key=lambda slot: rank.get(slot.target, len(rank)))  # type: ignore[arg-type]
            if self.allocator.apply(subscriber.leg.pacer, slots, now):
                self.emit("video_paused", subscriber)

    def media_counters(self) -> MediaCounters:
        """Everything counted in this room: by those in it, by those who left, and the mixer's time."""
        counters = MediaCounters()
        counters.add(self.retired)
        for participant in list(self.participants.values()):
            counters.add(participant.leg.media_counters())
        counters.mixing_seconds += self.mixer.stats.busy_seconds
        return counters

    # talking and video selection

    def _on_talking(self, participant_id: str, talking: bool) -> None:
        participant = self.participants.get(participant_id)
        if participant is None:
            return
        participant.talking = talking
        participant.emit("talking", talking)
        self.emit("talking_started" if talking else "talking_stopped", participant)
        if talking:
            if participant_id in self.recent_speakers:
                self.recent_speakers.remove(participant_id)
            self.recent_speakers.insert(0, participant_id)
            self._update_video()

    def _video_sources(self, *, shown_only: bool = True) -> list[VideoSource]:
        """Sources that have shown something (`shown_only`) or all of them, most recent speaker first. A participant
        with several (an Asterisk ConfBridge: one per member with a camera, and no telling which one talks) ranks
        with his first; the others come after everyone's first."""
        first: list[VideoSource] = []
        rest: list[VideoSource] = []
        for participant_id in self.recent_speakers:
            participant = self.participants.get(participant_id)
            if participant is None:
                continue
            live = []
            for source in participant.video_sources:
                if source.frames or not shown_only:
                    live.append(source)
                elif source.on_first_frame is None:
                    source.on_first_frame = self._update_video
            first += live[:1]
            rest += live[1:]
        return first + rest

    def video_source_count(self, excluding: str | None = None) -> int:
        """How many video sources the participants have (those of `excluding` left out), shown yet or not."""
        return sum(len(p.video_sources) for p in self.participants.values() if p.id != excluding)

    def plan_slots(self, subscriber: Participant, count: int) -> list[VideoSource | None]:
        """The sources `count` new slots of `subscriber` are meant for (None: nothing more to show): those of the
        others that his slots neither show nor are labelled for, his pinned participant's first, then by speaker."""
        shown = {slot.target for slot in subscriber.slots}
        labelled = {slot.label for slot in subscriber.slots}
        candidates = [s for s in self._ordered_for(subscriber, self._video_sources(shown_only=False)) if s not in shown]
        # first the participants no slot is labelled for, one source each (a ConfBridge's others after everyone's)
        first: list[VideoSource] = []
        for source in candidates:
            if source.owner_id not in labelled and all(source.owner_id != other.owner_id for other in first):
                first.append(source)
        ranked = first + [s for s in candidates if s not in first]
        planned: list[VideoSource | None] = list(ranked[:count])
        return planned + [None] * (count - len(planned))

    @staticmethod
    def _ordered_for(subscriber: Participant, sources: list[VideoSource]) -> list[VideoSource]:
        """`sources` less the subscriber's own: shared screens first (everyone sees what is presented), then his
        pinned participant's first source, then the rest as they came."""
        eligible = [s for s in sources if s.owner_id != subscriber.id]
        if subscriber.pinned is not None:
            pinned = next((s for s in eligible if s.owner_id == subscriber.pinned and s.content == "main"), None)
            if pinned is not None:
                eligible.remove(pinned)
                eligible.insert(0, pinned)
        return [s for s in eligible if s.content == "slides"] + [s for s in eligible if s.content != "slides"]

    def _update_video(self) -> None:
        """Point each subscriber's slots at the most recent speakers other than himself (stable where possible, and
        each source in the slot labelled for it where there is one)."""
        if not self.options.video or self.closed:
            return
        count = self.video_source_count()
        if count != self._source_count:
            self._source_count = count
            self.emit("video_sources_changed")
        sources = self._video_sources()
        changed = False
        for subscriber in self.participants.values():
            slots = [s for s in subscriber.slots if s.active]
            if not slots:
                continue
            eligible = [s for s in self._ordered_for(subscriber, sources) if slots[0].accepts(s)]
            wanted = eligible[: len(slots)]
            free = [slot for slot in slots if slot.target not in wanted]
            shown = {slot.target for slot in slots}
            wanted_owners = {source.owner_id for source in wanted if source not in shown}
            for source in wanted:
                if source not in shown and free:
                    slot = _slot_for(source, free, wanted_owners)
                    free.remove(slot)
                    slot.assign(source)
                    changed = True
            for slot in free:
                if slot.target is not None and slot.target not in wanted:
                    slot.assign(None)
                    changed = True
        if changed:
            self.emit("video_changed")


def _slot_for(source: VideoSource, free: list[VideoSlot], wanted_owners: set[str]) -> VideoSlot:
    """The free slot to show `source` in: the one labelled for its participant, else one labelled for nobody about
    to be shown, else the first."""
    labelled = next((slot for slot in free if slot.label == source.owner_id), None)
    if labelled is not None:
        return labelled
    return next((slot for slot in free if slot.label not in wanted_owners), free[0])
