"""Call control: an answered INVITE becomes a participant of the meeting's SFU room, and the dialog and the
participant live and die together.

CallControl (the stack's InviteHandler) routes through the dial plan, enforces the cap, joins the room and
answers. MeetingRoom follows one meeting's SFU room and sends the room updates. MeetingCall is one participant:
his dialog's handler, his seat in the conference registry, his ordered outbox of MESSAGEs.

When the media worker holding a room is lost, the room opens again on another (``moved``) and each call brings its
participant back into it without leaving its dialog: a re-INVITE without SDP to a browser (it offers afresh in the
200 OK: ICE restart, new DTLS; the answer goes in the ACK), a re-INVITE offering the new worker's address to a
plain-RTP leg. What call control holds of his state (muted, pinned) follows him.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

from gateway.calld.conferences import Conferences
from gateway.calld.conferences import Participant as Seat
from gateway.calls import roomstate
from gateway.calls.dialplan import DialPlan, Refusal
from gateway.confd.confbridge.service import ConfbridgeService
from gateway.confd.meetings.service import MeetingRecord
from gateway.config import Settings
from gateway.logs import tag_call
from gateway.media.interface import MediaParticipant, MediaRoom, MediaRooms, MediaUnavailable
from gateway.metrics import Metrics
from sfu.errors import RoomClosed, RoomFull, SdpError, SfuError
from sfu.settings import RoomOptions
from signaling.call import CallCancelled, IncomingCall
from signaling.dialog import BaseDialogHandler, Dialog, DialogError, OfferPending, RequestFailed
from signaling.message import SipRequest

logger = logging.getLogger(__name__)

FULL = "meeting is full"
DRAINING = "server is restarting: call again in a moment"
NO_MEDIA = "no media server available: call again in a moment"
#: seconds between the re-INVITE that moved a call's media and the one that offers it video slots again
SLOTS_AFTER_MOVE = 0.5
#: why a call ends when its media could not follow the room to another media worker
MEDIA_NOT_MOVED = "media server lost, and the call could not move to another"
DTMF_SIGNAL = re.compile(rb"Signal\s*=\s*([0-9*#A-Da-d])")
#: RFC 5168's keyframe request, in the form Asterisk sends (and video phones expect)
PICTURE_FAST_UPDATE = (
    b'<?xml version="1.0" encoding="utf-8" ?>\r\n<media_control>\r\n <vc_primitive>\r\n  <to_encoder>\r\n'
    b"   <picture_fast_update/>\r\n  </to_encoder>\r\n </vc_primitive>\r\n</media_control>\r\n"
)
#: how long a hang-up waits for the answer to its BYE before the call leaves the room anyway (a live peer answers at
#: once; a UDP peer gone silent would keep the transaction going for Timer F's 32 s)
BYE_ANSWER_WAIT = 2.0
SINGLE_SLOT_MODES = {"follow_talker", "last_marked", "first_marked"}
#: A client answering a room update with one of these cannot take them (baresip answers 415): no more are sent.
MESSAGES_REFUSED = {405, 415, 501}


def takes_messages(invite: SipRequest | None) -> bool:
    """Whether a caller may be sent in-dialog MESSAGEs: unless his INVITE's Allow leaves MESSAGE out. (sip.js and
    Wazo's SDK list MESSAGE in Allow and send no Accept, so Accept cannot be what decides.)"""
    if invite is None:
        return True
    allowed = invite.headers.values("allow")
    return not allowed or any(method.strip().upper() == "MESSAGE" for method in allowed)


def _spawn(tasks: set[asyncio.Task[Any]], work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


class RoomWatcher(Protocol):
    """Told when people come and go (the Asterisk bridge follows rooms with it)."""

    def participant_joined(self, meeting: MeetingRecord) -> None: ...

    def room_idle(self, meeting_uuid: UUID) -> None:
        """No participant is left in the room but bridged legs (maybe none at all)."""


class MeetingCall(BaseDialogHandler):
    """One participant: a confirmed SIP dialog joined to an SFU participant."""

    #: a leg to another conference (the Asterisk bridge) rather than a person
    bridged = False

    def __init__(self, room: MeetingRoom, participant: MediaParticipant, dialog: Dialog, seat: Seat) -> None:
        self.room = room
        self.participant = participant
        self.dialog = dialog
        self.seat = seat
        self.left = False
        #: the camera turned off in the app (the slot keeps its place; others show an avatar instead)
        self.video_muted = False
        #: whom the app pinned (None: following the speakers); set again on his media if the room moves
        self.pinned: str | None = None
        self.hand_raised = False
        self.slots_shown: dict[str, str | None] | None = None
        self.screens_shown: list[str] = []
        self.slots_paused: list[str] = []
        #: room updates go out while this holds: the caller allows MESSAGE and has not refused one
        self.takes_messages = takes_messages(dialog.initial_request if dialog.is_uas else None)
        #: a client that refuses our JSON updates (a phone) may still show text: the room's chat goes to it as such
        self.takes_text = self.takes_messages
        self._outbox: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: the ACK came: re-INVITEs may go out (sip.js drops one sent before)
        self.confirmed = False
        #: one SDP negotiation at a time, ours (adding slots) or the caller's (his re-INVITE)
        self._negotiation = asyncio.Lock()
        self._adding_slots: asyncio.Task[None] | None = None
        #: an offer of slots failed (refused, or the media side could not make one): none is tried again
        self._slots_failed = False
        self._sender = asyncio.get_running_loop().create_task(self._send_messages())
        self._listen(participant)

    def _listen(self, participant: MediaParticipant) -> None:
        participant.on("closed", self._participant_closed)
        participant.on("picture_fast_update", lambda: _spawn(self._tasks, self._ask_keyframe()))

    # -- what the room layer reads (roomstate.Member)
    @property
    def participant_id(self) -> str:
        return self.participant.id

    @property
    def caller_name(self) -> str:
        return self.seat.caller_id_name

    @property
    def caller_number(self) -> str:
        return self.seat.caller_id_number

    @property
    def call_id(self) -> str:
        return self.seat.call_id

    @property
    def user_uuid(self) -> UUID | None:
        return self.seat.user_uuid

    @property
    def talking(self) -> bool:
        return self.seat.talking

    @property
    def muted(self) -> bool:
        return self.participant.muted

    # -- dialog events
    def on_confirmed(self, dialog: Dialog) -> None:
        _spawn(self._tasks, self._after_ack())

    async def _after_ack(self) -> None:
        """After the ACK (sip.js drops a re-INVITE before it): add the video slots there is video for, then say
        welcome (more slots follow, if more video came meanwhile)."""
        self.confirmed = True
        if self.participant.wants_offer:
            await self._offer_slots()
        if not self.left:
            self.send(roomstate.welcome(self.room.bridge, self, self.room.members()))
            self.room.refresh_slots()
        self.ensure_slots()

    def ensure_slots(self) -> None:
        """Offer the video slots the participant lacks (one per other video source, up to last-N) and announce
        afresh those now showing someone new in place of someone gone, by re-INVITE, unless that is under way
        already (it looks again when done)."""
        if not self.confirmed or self.left or self._slots_failed or not self.participant.wants_offer:
            return
        if self._adding_slots is None or self._adding_slots.done():
            self._adding_slots = asyncio.get_running_loop().create_task(self._add_slots())

    async def _add_slots(self) -> None:
        while not self.left and self.participant.wants_offer:
            if not await self._offer_slots():
                return

    async def _offer_slots(self) -> bool:
        """One offer of slots (re-INVITE) and its answer; False if it failed (nothing more is tried then)."""
        async with self._negotiation:
            if self.left or self._slots_failed or not self.participant.wants_offer:
                return not self._slots_failed
            try:
                offer = await self.participant.create_slots_offer()
                if offer is None:
                    return True  # nothing to offer after all (the room changed meanwhile)
                answer = await self.dialog.reinvite(offer.encode())
                await self.participant.accept_slots_answer(answer.decode())
            except (DialogError, SfuError) as exc:
                logger.info("%s: no more video slots (%s)", self.participant_id, exc)
                self._slots_failed = True
                return False
            except Exception:
                logger.exception("%s: video slots failed", self.participant_id)
                self._slots_failed = True
                return False
        self.room.refresh_slots()
        return True

    async def on_offer(self, dialog: Dialog, offer: bytes, request: SipRequest) -> bytes | None:
        if self._negotiation.locked():
            raise OfferPending  # our re-INVITE adding slots is being made: the caller tries again (491)
        async with self._negotiation:
            answer = await self.participant.handle_offer(offer.decode())
        self.room.refresh_slots()
        return answer.encode()

    async def on_info(self, dialog: Dialog, request: SipRequest) -> int:
        if b"picture_fast_update" in request.body:
            # RFC 5168 (video phones that ask for a keyframe in SIP rather than RTCP)
            self.participant.request_keyframes()
            return 200
        match = DTMF_SIGNAL.search(request.body)
        if match is None:
            return 415 if request.body else 200
        if match.group(1) == b"1":
            self.participant.toggle_mute()
        return 200

    async def on_message(self, dialog: Dialog, request: SipRequest) -> int:
        """The app tells its own state (ParticipantState) or pins someone (Pin); see roomstate.AppMessage."""
        if (request.content_type or "").lower().startswith("text/plain"):
            # a phone's text message: it goes to the room's chat
            self.room.chat(self, request.body.decode("utf-8", errors="replace"))
            return 200
        message = roomstate.app_message(request.body)
        if message is None:
            return 200  # not ours (any other MESSAGE is accepted and ignored, as before)
        if message.type == "Chat":
            self.room.chat(self, message.text or "")
            return 200
        if message.type == "Pin":
            self.pinned = message.pinned
            self.participant.pin(message.pinned)
            return 200
        if message.muted is not None:
            self.participant.set_muted(message.muted)  # muted people are not mixed; everyone is told (ConfbridgeMute)
        if message.video_muted is not None and message.video_muted != self.video_muted:
            self.video_muted = message.video_muted
            self.room.tell(roomstate.video_muted, self)
        if message.hand_raised is not None and message.hand_raised != self.hand_raised:
            self.hand_raised = message.hand_raised
            self.room.tell(roomstate.hand, self)
        return 200

    async def _ask_keyframe(self) -> None:
        with contextlib.suppress(DialogError, OSError):
            await self.dialog.info(PICTURE_FAST_UPDATE, "application/media_control+xml")

    def on_bye(self, dialog: Dialog, request: SipRequest) -> None:
        _spawn(self._tasks, self.leave("hung up"))

    def on_terminated(self, dialog: Dialog, reason: str) -> None:
        _spawn(self._tasks, self.leave(reason))

    def _participant_closed(self, reason: str) -> None:
        # The media side ended (ICE lost, kicked from the room): end the call too.
        if not self.left:
            _spawn(self._tasks, self.hangup(reason))

    # -- the room moved to another media worker
    def follow_room(self) -> None:
        """His room is open again on another media worker (the one it was on is lost): his media joins it there."""
        _spawn(self._tasks, self._rejoin())

    async def _rejoin(self) -> None:
        started = time.monotonic()
        old = self.participant
        try:
            async with self._negotiation:
                if self.left:
                    return
                await self._join_again(old)
                # sip.js refuses a re-INVITE (500, Retry-After up to 10 s) while it still applies the answer our ACK
                # brought (RFC 6337 section 4.3): the next one (video slots) waits a moment rather than be refused
                await asyncio.sleep(SLOTS_AFTER_MOVE)
        except (DialogError, SfuError, OSError) as exc:
            logger.warning("%s: media not moved to the room's new media worker (%s)", self.participant_id, exc)
            await self.hangup(MEDIA_NOT_MOVED)
            return
        except Exception:
            logger.exception("%s: media not moved to the room's new media worker", self.participant_id)
            await self.hangup(MEDIA_NOT_MOVED)
            return
        logger.info("%s: media moved to the room's new media worker in %.2f s", self.participant_id,
                    time.monotonic() - started - SLOTS_AFTER_MOVE)  # fmt: skip
        self.room.refresh_slots()
        self.ensure_slots()

    async def _join_again(self, old: MediaParticipant) -> None:
        """Join the moved room with his id, by re-INVITE in his dialog (see the module docstring)."""
        media_room = self.room.media_room
        capacity = self.room.control.capacity()
        info = {"name": self.seat.caller_id_name, "number": self.seat.caller_id_number, "call_id": self.call_id,
                "participant_id": old.id}  # fmt: skip
        if old.kind == "webrtc":

            async def answer(offer: bytes) -> bytes:
                participant, sdp = await media_room.join_webrtc(offer.decode(errors="replace"), info,
                                                                max_participants=capacity)  # fmt: skip
                self._adopt(participant, old)
                return sdp.encode()

            await self.dialog.reinvite_for_offer(answer)
        else:
            participant, offer = await media_room.join_rtp_outbound(info, max_participants=capacity)
            self._adopt(participant, old)
            answer_sdp = await self.dialog.reinvite(offer.encode())
            await participant.accept_answer(answer_sdp.decode(errors="replace"))

    def _adopt(self, participant: MediaParticipant, old: MediaParticipant) -> None:
        """His new media in the moved room takes the place of the old, with what call control holds of his state."""
        self.participant = participant
        self._listen(participant)
        if self.seat.mute is not None:
            self.seat.mute = participant.set_muted
        if self.seat.quality is not None:
            self.seat.quality = lambda: participant.quality.to_json()
        if old.muted:
            participant.set_muted(True)
        if self.pinned is not None:
            participant.pin(self.pinned)
        # slots offered to the old media do not count against the new
        self._slots_failed = False
        if self.left:
            _spawn(self._tasks, participant.close("left"))

    # -- messages, in order, one at a time
    def send(self, body: bytes) -> None:
        if not self.left and self.takes_messages:
            self._outbox.put_nowait((body, "application/json"))

    def send_text(self, text: str) -> None:
        """Plain text (the room's chat for a client that takes no JSON updates, such as a phone)."""
        if not self.left and self.takes_text:
            self._outbox.put_nowait((text.encode(), "text/plain;charset=utf-8"))

    async def _send_messages(self) -> None:
        while self.takes_messages or self.takes_text:
            body, content_type = await self._outbox.get()
            json_update = content_type == "application/json"
            if not (self.takes_messages if json_update else self.takes_text):
                continue
            try:
                await self.dialog.message(body, content_type)
            except RequestFailed as exc:
                if exc.response.status in MESSAGES_REFUSED:
                    # The call goes on; only these messages stop.
                    what = "room updates" if json_update else "text messages"
                    logger.info("%s: the client refuses %s (%s): none sent any more", self.participant_id, what, exc)
                    if json_update:
                        self.takes_messages = False
                    else:
                        self.takes_text = False
                else:
                    logger.debug("%s: room update not delivered: %s", self.participant_id, exc)
            except (DialogError, OSError) as exc:
                logger.debug("%s: room update not delivered: %s", self.participant_id, exc)

    # -- ending
    async def hangup(self, reason: str) -> None:
        """We end the call (kick, meeting deleted or expired, media lost): BYE, then leave. The BYE's answer is
        awaited for `BYE_ANSWER_WAIT` at most: a phone gone silent must not stay in the room (nor hold up a
        shutdown) for Timer F's 32 s."""
        if not self.left:
            with contextlib.suppress(DialogError, OSError, TimeoutError):
                await asyncio.wait_for(
                    self.dialog.bye([("Reason", f'Q.850;cause=16;text="{reason}"')]), BYE_ANSWER_WAIT
                )
        await self.leave(reason)

    async def leave(self, reason: str) -> None:
        if self.left:
            return
        self.left = True
        tag_call(meeting_uuid=str(self.seat.meeting_uuid), participant=self.participant_id, call_id=self.call_id)
        logger.info("left the meeting: %s", reason)
        self._sender.cancel()
        await self.participant.close(reason)
        quality = self.participant.quality
        logger.info("call quality: %s", quality.describe(), extra={"call_quality": quality.summary()})
        await self.room.remove(self)


class MeetingRoom:
    """The gateway's side of one meeting's room: its calls, its updates, and closing when empty."""

    def __init__(self, control: CallControl, meeting_uuid: UUID, name: str, media_room: MediaRoom) -> None:
        self.control = control
        self.meeting_uuid = meeting_uuid
        self.bridge = roomstate.bridge(meeting_uuid, name)
        self.media_room = media_room
        self.calls: dict[str, MeetingCall] = {}
        self._refresh_pending = False
        media_room.on("talking", self._talking)
        media_room.on("muted", lambda participant_id, _muted: self._muted(participant_id))
        media_room.on("video_changed", self._video_changed)
        media_room.on("moved", self._moved)

    def members(self) -> list[MeetingCall]:
        return list(self.calls.values())

    def _moved(self) -> None:
        """The room is open again on another media worker: everyone's media follows it."""
        logger.info("meeting %s: its room moved to another media worker, %d calls follow", self.meeting_uuid,
                    len(self.calls))  # fmt: skip
        for call in self.calls.values():
            call.follow_room()

    def _video_changed(self) -> None:
        """Someone's video came or went, or a slot shows someone else: the apps are told who is in which slot, and
        whoever now lacks slots (or has one to announce afresh) gets an offer."""
        self.refresh_slots()
        for call in self.calls.values():
            call.ensure_slots()

    def add(self, call: MeetingCall) -> None:
        for other in self.calls.values():
            other.send(roomstate.joined(self.bridge, call))
        self.calls[call.participant_id] = call
        self.refresh_slots()

    async def remove(self, call: MeetingCall) -> None:
        if self.calls.pop(call.participant_id, None) is None:
            return
        self.control.conferences.remove(call.seat)
        for other in self.calls.values():
            other.send(roomstate.left(self.bridge, call))
        self.refresh_slots()
        if all(other.bridged for other in self.calls.values()):
            for watcher in self.control.watchers:
                watcher.room_idle(self.meeting_uuid)
        if not self.calls:
            await self.control.close_room(self.meeting_uuid)

    def _talking(self, participant_id: str, talking: bool) -> None:
        call = self.calls.get(participant_id)
        if call is None:
            return
        call.seat.talking = talking
        self.tell(roomstate.talking, call)
        self.refresh_slots()

    def _muted(self, participant_id: str) -> None:
        call = self.calls.get(participant_id)
        if call is not None:
            self.tell(roomstate.muted, call)

    def chat(self, sender: MeetingCall, text: str) -> None:
        """A chat line to everyone (the sender too, so every app shows the same order): JSON to the apps, plain text
        to clients that take no JSON (phones that display messages)."""
        text = roomstate.chat_text(text)
        if not text:
            return
        update = roomstate.chat(self.bridge, sender, text)
        for member in self.calls.values():
            if member.takes_messages:
                member.send(update)
            elif member is not sender:
                member.send_text(f"{sender.caller_name}: {text}")

    def tell(self, update: Callable[[dict[str, str], MeetingCall], bytes], call: MeetingCall) -> None:
        """Everyone is told of `call`'s change (one of roomstate's updates about a member)."""
        for member in self.calls.values():
            member.send(update(self.bridge, call))

    def refresh_slots(self) -> None:
        """Tell each subscriber which participant his video slots show and which are paused, when that changed
        (after the SFU moved)."""
        if self._refresh_pending:
            return
        self._refresh_pending = True
        asyncio.get_running_loop().call_soon(self._send_slots)

    def _send_slots(self) -> None:
        self._refresh_pending = False
        for call in self.calls.values():
            active = call.participant.video_slots()
            shown = {slot.mid: slot.owner_id for slot in active}
            # a slot may go from someone's camera to his screen: the same participant, but another picture
            screens = [slot.mid for slot in active if slot.owner_id is not None and slot.content == "slides"]
            paused = sorted(slot.mid for slot in active if slot.paused)
            state = (shown, screens, paused)
            if state != (call.slots_shown, call.screens_shown, call.slots_paused) and (shown or call.slots_shown):
                call.slots_shown, call.screens_shown, call.slots_paused = state
                call.send(roomstate.video_slots(self.bridge, shown, screens, paused))


class CallControl:
    """The SIP stack's InviteHandler for meetings."""

    def __init__(
        self,
        settings: Settings,
        media: MediaRooms,
        dialplan: DialPlan,
        conferences: Conferences,
        confbridge: ConfbridgeService,
        capacity: Callable[[], int],
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        #: set while the server drains: new calls are refused, calls in progress go on
        self.draining = False
        #: where the rooms are (this process, or media workers): call control cannot tell
        self.media = media
        self.dialplan = dialplan
        self.conferences = conferences
        self.confbridge = confbridge
        self.capacity = capacity
        self.rooms: dict[UUID, MeetingRoom] = {}
        self.watchers: list[RoomWatcher] = []

    def room_options(self) -> RoomOptions:
        policy = self.confbridge.policy()
        last_n = 1 if policy.video_mode in SINGLE_SLOT_MODES else self.settings.meetings.last_n
        return RoomOptions(
            max_participants=self.capacity(),
            video=policy.video_mode != "none" and last_n > 0,
            last_n=last_n,
            mixed_speakers=self.settings.media.mixed_speakers,
        )

    async def on_invite(self, call: IncomingCall) -> None:
        started = time.perf_counter()
        tag_call(call_id=call.call_id)
        outcome = await self._join(call)
        logger.info("INVITE %s from %s: %s", call.extension, call.request.from_.uri, outcome)
        if self.metrics is not None:
            self.metrics.joins.labels(outcome).inc()
            if outcome == "joined":
                self.metrics.invite_answer_latency.observe(time.perf_counter() - started)

    def _refuse(
        self, call: IncomingCall, status: int, text: str, outcome: str, headers: list[tuple[str, str]] | None = None
    ) -> str:
        call.reject(status, text, headers)
        return outcome

    async def _join(self, call: IncomingCall) -> str:
        """Answer or refuse `call`; returns the outcome, as the joins metric counts it."""
        if self.draining:
            # RFC 3261 21.5.4: a 503 with Retry-After; a phone behind a proxy tries another server at once
            return self._refuse(call, 503, DRAINING, "draining", [("Retry-After", "30")])
        try:
            number = call.request.from_.uri.user or ""
            destination = await self.dialplan.route(call.account, call.extension, call.caller, number)
        except Refusal as refusal:
            return self._refuse(call, refusal.status, refusal.text, f"refused_{refusal.status}")
        meeting = destination.meeting
        tag_call(meeting_uuid=str(meeting.uuid))
        if self.conferences.count(meeting.uuid) >= self.capacity():
            return self._refuse(call, 486, FULL, "full")
        offer = call.offer.decode(errors="replace")
        if not offer.strip():
            return self._refuse(call, 488, "an SDP offer is required", "bad_offer")
        try:
            room = await self.room_for(meeting.uuid, meeting.name)
        except SfuError as exc:
            logger.warning("no room for %s: %s", meeting.uuid, exc)
            return self._refuse(call, 503, NO_MEDIA, "no_media", [("Retry-After", "10")])
        info = {"name": destination.caller_name, "number": destination.caller_number, "call_id": call.call_id}
        webrtc = "RTP/SAVPF" in offer or "UDP/TLS" in offer
        try:
            if webrtc:
                participant, answer = await room.media_room.join_webrtc(offer, info, max_participants=self.capacity())
            else:
                participant, answer = await room.media_room.join_rtp(offer, info, max_participants=self.capacity())
        except RoomFull:
            return self._refuse(call, 486, FULL, "full")
        except SdpError as exc:
            return self._refuse(call, 488, str(exc) or "no common codec", "bad_offer")
        except RoomClosed:
            return self._refuse(call, 410, "meeting ended", "meeting_ended")
        except MediaUnavailable as exc:
            logger.warning("no media for %s: %s", meeting.uuid, exc)
            return self._refuse(call, 503, NO_MEDIA, "no_media", [("Retry-After", "10")])
        tag_call(participant=participant.id)
        if call.cancelled.is_set():
            await participant.close("cancelled")
            return "cancelled"
        seat = Seat(
            id=participant.id,
            meeting_uuid=meeting.uuid,
            tenant_uuid=meeting.tenant_uuid,
            caller_id_name=destination.caller_name,
            caller_id_number=destination.caller_number,
            call_id=call.call_id,
            user_uuid=destination.user_uuid,
            hangup=self.hangup_for(participant.id, meeting.uuid),
            kind="webrtc" if webrtc else "phone",
            mute=participant.set_muted,
            quality=lambda: participant.quality.to_json(),
        )
        try:
            dialog = call.answer(answer.encode())
        except CallCancelled:
            await participant.close("cancelled")
            return "cancelled"
        meeting_call = MeetingCall(room, participant, dialog, seat)
        dialog.handler = meeting_call
        room.add(meeting_call)
        self.conferences.add(seat, meeting.owner_uuids)
        for watcher in self.watchers:
            watcher.participant_joined(meeting)
        return "joined"

    def on_cancel(self, call: IncomingCall) -> None:
        """Nothing is reserved before the answer: a join still under way sees call.cancelled and undoes itself."""

    def hangup_for(self, participant_id: str, meeting_uuid: UUID) -> Any:
        """The seat's hang-up: whatever call holds that participant when it is used."""

        async def hangup(reason: str) -> None:
            room = self.rooms.get(meeting_uuid)
            call = room.calls.get(participant_id) if room else None
            if call is not None:
                await call.hangup(reason)

        return hangup

    async def room_for(self, meeting_uuid: UUID, name: str) -> MeetingRoom:
        """The meeting's room, opened (placed on a media worker, when there are workers) if it is not open."""
        room = self.rooms.get(meeting_uuid)
        options = self.room_options()
        if room is None or room.media_room.closed:
            media_room = await self.media.room(str(meeting_uuid), options)
            room = self.rooms.get(meeting_uuid)  # another join may have opened it meanwhile
            if room is None or room.media_room.closed:
                room = MeetingRoom(self, meeting_uuid, name, media_room)
                self.rooms[meeting_uuid] = room
        else:
            # The bridge options apply from the next join on.
            room.media_room.set_options(options)
        return room

    async def close_room(self, meeting_uuid: UUID) -> None:
        room = self.rooms.pop(meeting_uuid, None)
        if room is not None:
            await room.media_room.close("empty")

    async def hang_up_everyone(self, reason: str) -> None:
        """At once (an unreachable peer must not hold the others' BYE)."""
        calls = [call for room in list(self.rooms.values()) for call in room.members()]
        await asyncio.gather(*(call.hangup(reason) for call in calls), return_exceptions=True)

    async def close(self) -> None:
        """Hang everyone up, then stop the media."""
        await self.hang_up_everyone("server shutting down")
        await self.media.close()
