"""Every service of the application, built once at start-up and reached by resources through the app."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from gateway.auth.passwords import PasswordHashing
from gateway.auth.tenants import TenantService
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import TokenService
from gateway.calld.conferences import Conferences
from gateway.confd.authorizations.service import AuthorizationService
from gateway.confd.confbridge.service import ConfbridgeService
from gateway.confd.ingresses.service import IngressService
from gateway.confd.meetings.service import MeetingService
from gateway.confd.users.service import UserService
from gateway.config import Settings
from gateway.db.engine import Database
from gateway.events import EventBus
from gateway.metrics import Metrics


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: EventBus
    tenants: TenantService
    tokens: TokenService
    users: UserService
    ingresses: IngressService
    meetings: MeetingService
    authorizations: AuthorizationService
    confbridge: ConfbridgeService
    conferences: Conferences
    metrics: Metrics
    hashing: PasswordHashing
    login_throttle: LoginThrottle

    def capacity(self) -> int:
        """The participant cap: the configured hard limit, or lower if the bridge profile's max_members says so."""
        cap = self.settings.meetings.max_participants
        max_members = self.confbridge.policy().max_members
        return min(cap, max_members) if max_members else cap

    def is_full(self, meeting_uuid: UUID) -> bool:
        return self.conferences.count(meeting_uuid) >= self.capacity()


SERVICES = web.AppKey("services", Services)
