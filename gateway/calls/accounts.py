"""The SIP accounts the stack authenticates: users' own lines, each meeting's guest account, and trunk peers
with credentials (config.yaml asterisk.trunk_peers).

Looked up in the database on every challenge answer, so a deleted meeting's guest account (or a deleted user)
stops authenticating at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from gateway.calls.trunk import TrunkPeers
from gateway.confd.meetings.service import GUEST_USERNAME, MeetingService
from gateway.confd.users.service import UserService
from signaling.stack import SipAccount

_GUEST_PREFIX, _, _GUEST_SUFFIX = GUEST_USERNAME.partition("{uuid}")


@dataclass(frozen=True)
class GuestLine:
    """A meeting's guest account: it may only dial meeting-guest, which is that meeting."""

    meeting_uuid: UUID


@dataclass(frozen=True)
class UserLine:
    user_uuid: UUID
    tenant_uuid: UUID
    display_name: str


class AccountDirectory:
    def __init__(self, users: UserService, meetings: MeetingService, trunk: TrunkPeers | None = None) -> None:
        self._users = users
        self._meetings = meetings
        self._trunk = trunk

    async def lookup(self, username: str) -> SipAccount | None:
        if self._trunk is not None:
            trunk = self._trunk.account_for_username(username)
            if trunk is not None:
                return trunk
        if username.startswith(_GUEST_PREFIX) and username.endswith(_GUEST_SUFFIX):
            meeting = await self._meetings.find_by_guest_username(username)
            if meeting is None:
                return None
            return SipAccount(username, meeting.guest_sip_password, GuestLine(meeting.uuid))
        user = await self._users.find_by_sip_username(username)
        if user is None:
            return None
        return SipAccount(username, user.sip_password, UserLine(user.uuid, user.tenant_uuid, user.display_name))
