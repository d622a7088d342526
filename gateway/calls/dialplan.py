"""The meeting dial plan: which meeting an authenticated caller reaches, or the clear refusal he gets.

- a guest account dials `meeting-guest` and reaches its own meeting; anything else is 403;
- a user dials `wazo-meeting-{uuid}` or a meeting's exten, in his own tenant; anything else is 404;
- a trunk peer (Asterisk routing a phone in) dials `wazo-meeting-{uuid}` or an exten, in any tenant.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from gateway.calls.accounts import GuestLine, UserLine
from gateway.calls.trunk import TrunkLine
from gateway.confd.meetings.service import MeetingRecord, MeetingService
from signaling.stack import SipAccount

GUEST_EXTENSION = "meeting-guest"
MEETING_EXTENSION = re.compile(r"wazo-meeting-(?P<uuid>[0-9a-fA-F-]{36})")


class Refusal(Exception):
    """A final SIP response and its Reason text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Destination:
    meeting: MeetingRecord
    caller_name: str
    caller_number: str
    user_uuid: uuid.UUID | None


class DialPlan:
    def __init__(self, meetings: MeetingService) -> None:
        self._meetings = meetings

    async def route(
        self, account: SipAccount, extension: str, caller_name: str, caller_number: str = ""
    ) -> Destination:
        line = account.owner
        if isinstance(line, GuestLine):
            if extension != GUEST_EXTENSION:
                raise Refusal(403, f"a meeting guest account may only dial {GUEST_EXTENSION}")
            meeting = await self._meetings.find(line.meeting_uuid)
            if meeting is None:
                raise Refusal(404, "meeting not found")
            return Destination(meeting, caller_name or "Guest", "", None)
        if isinstance(line, UserLine):
            meeting = await self._find(extension)
            if meeting is None or meeting.tenant_uuid != line.tenant_uuid:
                raise Refusal(404, "no such meeting in your tenant")
            return Destination(meeting, line.display_name, account.username, line.user_uuid)
        if isinstance(line, TrunkLine):
            meeting = await self._find(extension)
            if meeting is None:
                raise Refusal(404, "no such meeting")
            return Destination(meeting, caller_name or caller_number or "Phone", caller_number, None)
        raise Refusal(403, "this account may not call meetings")

    async def _find(self, extension: str) -> MeetingRecord | None:
        match = MEETING_EXTENSION.fullmatch(extension)
        if match:
            return await self._meetings.find(uuid.UUID(match["uuid"]))
        # Bytes of the Request-URI that were not UTF-8 (kept as lone surrogates) or control characters are no
        # exten, and a database query could not even carry them.
        if extension and extension.isprintable():
            return await self._meetings.find_by_exten(extension)
        return None
