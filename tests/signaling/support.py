"""Test doubles that play the gateway's role: an account store and a small meeting dial plan/answerer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from signaling.call import IncomingCall
from signaling.dialog import BaseDialogHandler, Dialog
from signaling.message import SipRequest
from signaling.stack import SipAccount

CANNED_SDP = (
    b"v=0\r\n"
    b"o=- 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


class Accounts:
    """A CredentialStore over a dict; deleting an account makes it stop authenticating."""

    def __init__(self, accounts: dict[str, tuple[str, object]] | None = None) -> None:
        self.accounts = dict(accounts or {})
        self.lookups = 0

    def add(self, username: str, password: str, owner: object = None) -> None:
        self.accounts[username] = (password, owner)

    def delete(self, username: str) -> None:
        self.accounts.pop(username, None)

    async def lookup(self, username: str) -> SipAccount | None:
        self.lookups += 1
        entry = self.accounts.get(username)
        return SipAccount(username, entry[0], entry[1]) if entry else None


@dataclass
class Meeting:
    uuid: str
    tenant: str
    exten: str
    max_members: int = 100
    members: set[str] = field(default_factory=set)


@dataclass
class User:
    tenant: str


class Recorder(BaseDialogHandler):
    """Keeps what a dialog reports."""

    def __init__(self, answer: bytes = CANNED_SDP) -> None:
        self.answer = answer
        self.events: list[str] = []
        self.messages: list[SipRequest] = []
        self.infos: list[SipRequest] = []
        self.offers: list[bytes] = []
        self.confirmed = asyncio.Event()
        self.terminated = asyncio.Event()
        self.reason: str | None = None

    def on_confirmed(self, dialog: Dialog) -> None:
        self.events.append("confirmed")
        self.confirmed.set()

    async def on_offer(self, dialog: Dialog, offer: bytes, request: SipRequest) -> bytes | None:
        self.offers.append(offer)
        self.events.append(f"offer:{request.method}")
        return self.answer

    async def on_info(self, dialog: Dialog, request: SipRequest) -> int:
        self.infos.append(request)
        return 200

    async def on_message(self, dialog: Dialog, request: SipRequest) -> int:
        self.messages.append(request)
        return 200

    def on_bye(self, dialog: Dialog, request: SipRequest) -> None:
        self.events.append("bye")

    def on_terminated(self, dialog: Dialog, reason: str) -> None:
        self.events.append(f"terminated:{reason}")
        self.reason = reason
        self.terminated.set()


class DialPlan:
    """What the gateway will do: guests dial `meeting-guest`, users `wazo-meeting-{uuid}` or the exten, in their
    tenant. Answers with `answerer(offer)` (a canned SDP by default), after `delay` seconds."""

    def __init__(self, answer: bytes | None = CANNED_SDP, delay: float = 0.0) -> None:
        self.meetings: dict[str, Meeting] = {}
        self.answer = answer
        self.delay = delay
        self.calls: list[IncomingCall] = []
        self.cancelled: list[IncomingCall] = []
        self.handlers: list[Recorder] = []
        self.answered = asyncio.Event()
        self.hold = False  # leave calls pending (to be cancelled)
        self.cancel_seen = asyncio.Event()

    def resolve(self, call: IncomingCall) -> tuple[Meeting | None, int, str]:
        owner = call.account.owner
        exten = call.extension
        if isinstance(owner, Meeting):  # a meeting's guest account
            if exten != "meeting-guest":
                return None, 403, "guest accounts may only dial meeting-guest"
            return owner, 0, ""
        if isinstance(owner, User):
            for m in self.meetings.values():
                if exten in (f"wazo-meeting-{m.uuid}", m.exten):
                    if m.tenant != owner.tenant:
                        return None, 404, "no such meeting"
                    return m, 0, ""
        return None, 404, "no such extension"

    async def on_invite(self, call: IncomingCall) -> None:
        self.calls.append(call)
        meeting, status, text = self.resolve(call)
        if meeting is None:
            call.reject(status, text)
            return
        if len(meeting.members) >= meeting.max_members:
            call.reject(486, "meeting is full")
            return
        if self.hold:
            return
        if self.delay:
            await asyncio.sleep(self.delay)
            if call.cancelled.is_set():
                return
        if self.answer is None or b"m=audio" not in call.offer:
            call.reject(488, "no common codec")
            return
        handler = Recorder(self.answer)
        self.handlers.append(handler)
        meeting.members.add(call.call_id)
        call.answer(self.answer, handler)
        self.answered.set()

    def on_cancel(self, call: IncomingCall) -> None:
        self.cancelled.append(call)
        self.cancel_seen.set()
