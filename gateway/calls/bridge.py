"""The Asterisk bridge: one SIP call per active room to the same meeting's ConfBridge on Asterisk.

The leg is a participant of a special kind (`BridgeCall`, a `MeetingCall` with `bridged = True`): it takes a seat
in the room and in the conference registry, so it counts against the cap, is listed, and is heard like a speaker;
the mixer sends it the mix of everyone but itself, so Asterisk never gets its own audio back. It receives no room
updates (those are for the people's apps). The leg is plain RTP: audio, and in rooms with video one sendrecv video
stream on which it sends the current speaker (never Asterisk's own video back). ConfBridge in `video_mode=sfu`
re-INVITEs to add a stream per video source on its side and to remove it (port 0) when the source goes; the leg
receives each (up to the room's last-N) as a source the browsers' slots can show, and refuses the rest with port 0
while the call goes on (`sfu/rtpleg.py`).

When (config.yaml `asterisk.connect`):
- `on_first_participant`: a room's leg is placed when a participant (not a bridge) joins; with `hangup_when_empty`
  it is hung up when the last one leaves, otherwise it stays until the meeting is deleted;
- `always`: every meeting has a leg while it exists, from its creation or from start-up for existing meetings.
A leg that drops (BYE; or an in-dialog OPTIONS, sent as a keepalive or at once when Asterisk's RTP stops, gets 481,
408 or no answer) is placed again after `retry_min_seconds`; attempts that fail to connect wait twice as long each
time, up to `retry_max_seconds`, for as long as the room wants a leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from gateway.auth.tenants import TenantService
from gateway.calld.conferences import Participant as Seat
from gateway.calls.control import CallControl, MeetingCall, MeetingRoom
from gateway.confd.meetings.service import MeetingRecord, MeetingService
from gateway.config import AsteriskSettings
from gateway.events import Event, EventBus
from gateway.http.lists import ListParams
from gateway.media.interface import MediaParticipant
from sfu.errors import ParticipantClosed, RoomClosed, RoomFull, SdpError, SfuError
from signaling.dialog import BaseDialogHandler, Dialog, DialogError
from signaling.digest import DigestCredentials
from signaling.message import SipRequest
from signaling.stack import CallFailed, SipStack

logger = logging.getLogger(__name__)

BRIDGE_NAME = "Asterisk ConfBridge"
#: config.yaml codec names -> SDP encoding names (lower case)
CODEC_NAMES = {"opus": "opus", "g722": "g722", "pcmu": "pcmu", "pcma": "pcma"}


class BridgeFailure(Exception):
    """A leg could not be placed (refused, unreachable, no common codec, room full or closed)."""


def restrict_codecs(offer: str, codecs: Sequence[str]) -> str:
    """Keep only the configured audio codecs (in the configured order) and telephone-event in the audio section of
    an offer; other sections (video) are left as they are."""
    names: dict[str, str] = {}
    section = ""
    for line in offer.split("\r\n"):
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        elif section == "audio" and line.startswith("a=rtpmap:"):
            payload_type, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            names[payload_type] = encoding.split("/")[0].lower()
    wanted = [pt for codec in codecs for pt, name in names.items() if name == CODEC_NAMES[codec]]
    wanted += [pt for pt, name in names.items() if name == "telephone-event"]
    lines = []
    section = ""
    for line in offer.split("\r\n"):
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        if section == "audio":
            if line.startswith("m=audio "):
                port, profile = line.split()[1:3]
                line = f"m=audio {port} {profile} {' '.join(wanted)}"
            elif line.startswith(("a=rtpmap:", "a=fmtp:")) and line.split(":", 1)[1].split(" ")[0] not in wanted:
                continue
        lines.append(line)
    return "\r\n".join(lines)


class BridgeCall(MeetingCall):
    """The room's leg to Asterisk: a participant that gets no room updates."""

    bridged = True

    def __init__(self, room: MeetingRoom, participant: MediaParticipant, dialog: Dialog, seat: Seat) -> None:
        super().__init__(room, participant, dialog, seat)
        self.ended = asyncio.Event()
        self.end_reason = ""

    def send(self, body: bytes) -> None:
        """Room updates are for the people's apps, not for Asterisk."""

    async def leave(self, reason: str) -> None:
        self.end_reason = self.end_reason or reason
        try:
            await super().leave(reason)
        finally:
            self.ended.set()


class _Early(BaseDialogHandler):
    """The dialog's handler between the 200 OK and the leg joining the room: re-offers wait, an end is noted."""

    def __init__(self) -> None:
        self.call: asyncio.Future[MeetingCall] = asyncio.get_running_loop().create_future()
        self.ended: str | None = None

    async def on_offer(self, dialog: Dialog, offer: bytes, request: SipRequest) -> bytes | None:
        await asyncio.wait([self.call])
        if self.call.cancelled():
            return None
        return await self.call.result().on_offer(dialog, offer, request)

    def on_terminated(self, dialog: Dialog, reason: str) -> None:
        self.ended = reason
        if not self.call.done():
            self.call.cancel()


class BridgeLink:
    """One meeting's leg to Asterisk, kept up (placed, watched, placed again) until stopped."""

    def __init__(self, bridge: AsteriskBridge, meeting_uuid: UUID) -> None:
        self.bridge = bridge
        self.meeting_uuid = meeting_uuid
        self.call: BridgeCall | None = None
        self.attempts = 0
        self.connections = 0
        self.stopped = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def __repr__(self) -> str:
        return f"<BridgeLink {self.meeting_uuid} attempts={self.attempts} connections={self.connections}>"

    def stop(self, reason: str) -> None:
        """Hang the leg up (BYE with the reason) and place it no more."""
        if self.stopped:
            return
        self.stopped = True
        self.task.cancel()
        self.bridge.spawn(self._finish(reason))

    async def _finish(self, reason: str) -> None:
        call = self.call
        if call is not None and not call.left:
            await call.hangup(reason)
        await asyncio.wait([self.task], timeout=5.0)
        await self.bridge.close_room_if_empty(self.meeting_uuid)

    async def _run(self) -> None:
        settings = self.bridge.settings
        delay = settings.retry_min_seconds
        try:
            while not self.stopped:
                try:
                    meeting = await self.bridge.meetings.find(self.meeting_uuid)
                    if meeting is None:
                        break
                    self.attempts += 1
                    call = await self._connect(meeting)
                except BridgeFailure as exc:
                    logger.warning("bridge %s: %s; next try in %.1f s", self.meeting_uuid, exc, delay)
                except Exception:
                    logger.exception("bridge %s: placing the leg failed; next try in %.1f s", self.meeting_uuid, delay)
                else:
                    self.connections += 1
                    ended = await self._watch(call)
                    self.call = None
                    if self._carried_audio(call):
                        delay = settings.retry_min_seconds  # the leg worked: the backoff is for failures only
                    else:
                        ended += " before any audio came from Asterisk"
                    logger.warning("bridge %s: %s; next try in %.1f s", self.meeting_uuid, ended, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.0))
                delay = min(delay * 2, settings.retry_max_seconds)
        finally:
            self.bridge.link_done(self)

    @staticmethod
    def _carried_audio(call: BridgeCall) -> bool:
        """A leg Asterisk answered and then dropped before sending any audio (say Answer() then a ConfBridge that
        fails) counts as a failed attempt, so that such a dialplan is not called again every second."""
        return call.participant.last_received_at is not None

    async def _connect(self, meeting: MeetingRecord) -> BridgeCall:
        bridge = self.bridge
        control = bridge.control
        settings = bridge.settings
        if control.conferences.count(meeting.uuid) >= control.capacity():
            raise BridgeFailure("the room is full")
        extension = settings.extension_pattern.format(uuid=meeting.uuid, exten=meeting.exten)
        info = {"name": BRIDGE_NAME, "number": extension, "bridge": True}
        try:
            room = await control.room_for(meeting.uuid, meeting.name)
            participant, offer = await room.media_room.join_rtp_outbound(info, max_participants=control.capacity())
        except RoomFull:
            raise BridgeFailure("the room is full") from None
        except RoomClosed:
            raise BridgeFailure("the room closed") from None
        except SfuError as exc:
            raise BridgeFailure(f"no room: {exc}") from None
        early = _Early()
        try:
            dialog = await asyncio.wait_for(
                bridge.stack.invite(
                    bridge.target(extension),
                    restrict_codecs(offer, settings.codecs).encode(),
                    credentials=DigestCredentials(settings.username, settings.password) if settings.password else None,
                    from_uri=f'"{BRIDGE_NAME}" <sip:{settings.username}@{bridge.domain}>',
                    headers=[("X-Meeting-UUID", str(meeting.uuid))],
                    handler=early,
                ),
                settings.connect_timeout_seconds,
            )
        except BaseException as exc:
            await participant.close("bridge not connected")
            if isinstance(exc, CallFailed):
                raise BridgeFailure(f"Asterisk answered {exc}") from None
            if isinstance(exc, TimeoutError):
                raise BridgeFailure("Asterisk did not answer") from None
            if isinstance(exc, (DialogError, OSError)):
                raise BridgeFailure(f"cannot reach Asterisk: {exc}") from None
            raise
        try:
            answer = dialog.initial_response.body.decode() if dialog.initial_response else ""
            await participant.accept_answer(answer)
            if early.ended is not None or participant.closed:
                raise ParticipantClosed(f"the call or the room ended meanwhile ({early.ended or 'room closed'})")
        except BaseException as exc:
            early.call.cancel()
            await participant.close("bridge not connected")
            with contextlib.suppress(DialogError, OSError):
                await dialog.bye([("Reason", 'Q.850;cause=47;text="no usable media"')])
            if isinstance(exc, (SdpError, ParticipantClosed)):
                raise BridgeFailure(f"the answer is not usable: {exc}") from None
            raise
        seat = Seat(
            id=participant.id,
            meeting_uuid=meeting.uuid,
            tenant_uuid=meeting.tenant_uuid,
            caller_id_name=BRIDGE_NAME,
            caller_id_number=extension,
            call_id=dialog.call_id,
            user_uuid=None,
            hangup=control.hangup_for(participant.id, meeting.uuid),
            kind="bridge",
            quality=lambda: participant.quality.to_json(),
        )
        call = BridgeCall(room, participant, dialog, seat)
        dialog.handler = call
        early.call.set_result(call)
        room.add(call)
        control.conferences.add(seat, meeting.owner_uuids)
        self.call = call
        logger.info("bridge %s: connected to %s (call %s)", meeting.uuid, extension, dialog.call_id)
        return call

    async def _watch(self, call: BridgeCall) -> str:
        """Until the leg ends; returns why it ended, in plain words.

        An Asterisk that vanished without a BYE (crash, `kill -9`, network cut) is noticed two ways, each by an
        in-dialog OPTIONS: the keepalive every `keepalive_seconds`, and at once when its RTP stopped for
        `rtp_silence_seconds`. ConfBridge sends its mix to each member without pause (silence too: we offer neither
        comfort noise nor Opus DTX, and Opus DTX would still send a packet every 400 ms), so a silence is a reason
        to ask, but only if Asterisk's audio had been flowing and the direction lets it send; a live Asterisk that
        answers is asked again only after its audio came back and stopped again (the keepalive covers the rest).
        The leg's receive path only stamps each packet's time; this loop sleeps until the stamp would be that old.
        """
        settings = self.bridge.settings
        keepalive = settings.keepalive_seconds
        silence = settings.rtp_silence_seconds
        next_keepalive = time.monotonic() + keepalive if keepalive > 0 else math.inf
        probed_after: float | None = None  # the last packet's time when the silence was last probed
        try:
            while not call.ended.is_set():
                now = time.monotonic()
                leg = call.participant  # another one after the room moved to another media worker
                last = leg.last_received_at
                silence_due = math.inf
                if silence > 0 and last is not None and last != probed_after and leg.receives_audio:
                    silence_due = last + silence
                due = min(next_keepalive, silence_due)
                if due > now:
                    # with the silence watch on, look again at least that often (a re-INVITE may resume the audio)
                    wait = min(due - now, silence) if silence > 0 else due - now
                    if wait == math.inf:
                        await call.ended.wait()
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(call.ended.wait(), wait)
                    continue
                if silence_due <= now:
                    probed_after = last
                    quiet = now - silence_due + silence
                    why = f"sent after {quiet:.1f} s without RTP from Asterisk"
                    failure = await self._probe(call, why, settings.probe_timeout_seconds)
                    if failure is None:
                        logger.info(
                            "bridge %s: no RTP from Asterisk for %.1f s, but it still has the call: the leg stays",
                            self.meeting_uuid,
                            quiet,
                        )
                else:
                    failure = await self._probe(call, "sent as the keepalive", keepalive)
                next_keepalive = time.monotonic() + keepalive if keepalive > 0 else math.inf
                if failure is not None and not call.ended.is_set():
                    # The BYE may never be answered: the leg is over once it is sent, not when Timer F fires.
                    self.bridge.spawn(call.hangup("Asterisk not answering"))
                    await call.ended.wait()
                    return failure
        except asyncio.CancelledError:
            if not call.left and not self.stopped:
                self.bridge.spawn(call.hangup("bridge stopped"))
            raise
        if call.end_reason in ("hung up", "remote-bye"):
            return "Asterisk hung up the leg (BYE)"
        return f"the leg ended ({call.end_reason})"

    @staticmethod
    async def _probe(call: BridgeCall, why: str, wait: float) -> str | None:
        """An in-dialog OPTIONS: None when Asterisk still has the call, else what its answer (or none) means."""
        try:
            response = await asyncio.wait_for(call.dialog.options(), wait)
        except TimeoutError:
            return f"Asterisk did not answer an OPTIONS ({why}) within {wait:g} s: it is down or unreachable"
        except (DialogError, OSError) as exc:
            return f"an OPTIONS ({why}) could not be sent: {exc}"
        status = f"{response.status} {response.reason}"
        if response.status < 300 or response.status in (405, 501):
            return None
        if response.status == 481:
            return f"Asterisk no longer knows the call ({status} to an OPTIONS {why}): it probably restarted"
        if response.status == 408:
            return f"Asterisk did not answer an OPTIONS ({why}; {status}): it is down or unreachable"
        return f"Asterisk answered {status} to an OPTIONS ({why})"


class AsteriskBridge:
    """Follows meetings and rooms, and keeps one BridgeLink per room that wants a leg to Asterisk."""

    def __init__(
        self,
        settings: AsteriskSettings,
        domain: str,
        control: CallControl,
        stack: SipStack,
        meetings: MeetingService,
        tenants: TenantService,
        bus: EventBus,
    ) -> None:
        self.settings = settings
        self.domain = domain
        self.control = control
        self.stack = stack
        self.meetings = meetings
        self.tenants = tenants
        self.bus = bus
        self.links: dict[UUID, BridgeLink] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: list[Any] = []
        self._closed = False

    def target(self, extension: str) -> str:
        suffix = "" if self.settings.transport == "udp" else f";transport={self.settings.transport}"
        return f"sip:{extension}@{self.settings.host}:{self.settings.port}{suffix}"

    @property
    def always(self) -> bool:
        return self.settings.connect == "always"

    async def start(self) -> None:
        self.control.watchers.append(self)
        self._unsubscribe.append(self.bus.subscribe(self._meeting_created, "meeting_created"))
        self._unsubscribe.append(self.bus.subscribe(self._meeting_deleted, "meeting_deleted"))
        if self.always:
            tenants = {tenant.uuid for tenant in self.tenants.all()}
            if tenants:
                _, meetings = await self.meetings.search(tenants, ListParams())
                for meeting in meetings:
                    self.want(meeting.uuid)

    async def close(self) -> None:
        self._closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self in self.control.watchers:
            self.control.watchers.remove(self)
        links = list(self.links.values())
        for link in links:
            link.stop("server shutting down")
        tasks = [link.task for link in links] + list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    # -- what the rooms and the meetings say
    def participant_joined(self, meeting: MeetingRecord) -> None:
        self.want(meeting.uuid)

    def room_idle(self, meeting_uuid: UUID) -> None:
        if not self.always and self.settings.hangup_when_empty:
            self.release(meeting_uuid, "room empty")

    def _meeting_created(self, event: Event) -> None:
        if self.always:
            self.want(UUID(event.data["uuid"]))

    def _meeting_deleted(self, event: Event) -> None:
        self.release(UUID(event.data["uuid"]), "meeting deleted")

    # -- links
    def want(self, meeting_uuid: UUID) -> None:
        if not self._closed and meeting_uuid not in self.links:
            self.links[meeting_uuid] = BridgeLink(self, meeting_uuid)

    def release(self, meeting_uuid: UUID, reason: str) -> None:
        link = self.links.pop(meeting_uuid, None)
        if link is not None:
            link.stop(reason)

    def link_done(self, link: BridgeLink) -> None:
        if self.links.get(link.meeting_uuid) is link:
            del self.links[link.meeting_uuid]

    async def close_room_if_empty(self, meeting_uuid: UUID) -> None:
        """A room kept open only for a leg that never came up (connect: always) closes with the link."""
        room = self.control.rooms.get(meeting_uuid)
        if room is not None and not room.calls and not room.media_room.participant_count:
            await self.control.close_room(meeting_uuid)

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
