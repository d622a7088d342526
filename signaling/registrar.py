"""The registrar (RFC 3261 section 10.3): bindings of an address-of-record to contacts, with expiry.

The address-of-record is the account's username (the realm is the one SIP domain). A binding remembers the
flow it was made on: requests for that contact go back over it while it is open (NAT friendly). A WebSocket
binding dies when its connection closes (RFC 7118: `*.invalid` contacts are reachable only over it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .message import SipRequest
from .transport import Flow
from .uri import Address, SipUri, SipUriError

__all__ = ["Binding", "RegisterResult", "Registrar"]


def _dies_with(flow: Flow) -> bool:
    """WebSocket contacts (`*.invalid`) are only reachable over their connection: the binding dies with it.
    A TCP or UDP contact stays reachable at its address after its connection closes."""
    return flow.transport.startswith("WS")


def _best_first(bindings: list[Binding]) -> list[Binding]:
    """Highest q first, then the most recently refreshed (latest expiry)."""
    if len(bindings) < 2:
        return list(bindings)
    return sorted(bindings, key=lambda b: (-b.q, -b.expires_at))


@dataclass(slots=True, eq=False)
class Binding:
    aor: str
    contact: Address
    expires_at: float
    call_id: str
    cseq: int
    flow: Flow | None = None
    q: float = 1.0

    @property
    def uri(self) -> SipUri:
        return self.contact.uri

    def expires_in(self, now: float | None = None) -> int:
        return max(0, round(self.expires_at - (now if now is not None else time.monotonic())))

    def contact_header(self, now: float | None = None) -> str:
        """The binding as a 2xx lists it: the Contact as registered, with its parameters (linphone looks for its
        own, `+sip.instance` included, among them) and the time left."""
        params = {name: value for name, value in self.contact.params.items() if name.lower() != "expires"}
        return str(Address(self.contact.uri, None, {**params, "expires": str(self.expires_in(now))}))


@dataclass(slots=True)
class RegisterResult:
    status: int
    bindings: list[Binding] = field(default_factory=list)
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Registrar:
    """Bindings per address-of-record. `on_change(aor)` is called when an AOR's bindings change."""

    def __init__(
        self,
        default_expires: int = 3600,
        min_expires: int = 30,
        max_expires: int = 7200,
        max_bindings_per_aor: int = 20,
    ) -> None:
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_bindings = max_bindings_per_aor
        self._bindings: dict[str, list[Binding]] = {}
        self.on_change: Callable[[str], None] | None = None

    def binding_count(self) -> int:
        """Contacts registered now (expired ones are dropped as they are met, so this may count a few late)."""
        return sum(len(bindings) for bindings in self._bindings.values())

    def lookup(self, aor: str) -> list[Binding]:
        """Live bindings of an AOR, best (highest q, most recent) first."""
        return _best_first(self._alive(aor, time.monotonic()))

    def _alive(self, aor: str, now: float) -> list[Binding]:
        """The AOR's live bindings (stored order); expired ones and those dead with their connection dropped."""
        lst = self._bindings.get(aor)
        if not lst:
            return []
        alive = [b for b in lst if b.expires_at > now and (b.flow is None or b.flow.alive or not _dies_with(b.flow))]
        if len(alive) != len(lst):
            self._store(aor, alive)
        return alive

    def bound_flows(self) -> set[Flow]:
        """The flows live bindings were made on (a connection carrying a registration is in use)."""
        now = time.monotonic()
        return {b.flow for lst in self._bindings.values() for b in lst if b.flow is not None and b.expires_at > now}

    def aors(self) -> list[str]:
        return list(self._bindings)

    def _store(self, aor: str, bindings: list[Binding]) -> None:
        if bindings:
            self._bindings[aor] = bindings
        else:
            self._bindings.pop(aor, None)

    def remove_aor(self, aor: str) -> None:
        if self._bindings.pop(aor, None) is not None and self.on_change:
            self.on_change(aor)

    def _drop_flow(self, flow: Flow) -> None:
        changed = []
        for aor, lst in list(self._bindings.items()):
            keep = [b for b in lst if b.flow is not flow]
            if len(keep) != len(lst):
                self._store(aor, keep)
                changed.append(aor)
        if self.on_change:
            for aor in changed:
                self.on_change(aor)

    def register(self, aor: str, request: SipRequest, flow: Flow) -> RegisterResult:
        """Apply a REGISTER for `aor` (already authenticated and authorised)."""
        now = time.monotonic()
        call_id = request.call_id
        cseq = request.cseq.seq
        contacts_raw = request.headers.values("contact")
        header_expires = request.headers.get("expires")
        default = self.default_expires
        if header_expires is not None:
            if not (header_expires.strip().isascii() and header_expires.strip().isdigit()):  # int() refuses "²"
                return RegisterResult(400, reason="Bad Expires")
            default = int(header_expires.strip())
        alive = self._alive(aor, now)
        if not contacts_raw:
            return RegisterResult(200, _best_first(alive))
        try:
            contacts = [Address.parse(c) for c in contacts_raw]
        except SipUriError:
            return RegisterResult(400, reason="Bad Contact")
        if any(c.wildcard for c in contacts):
            # section 10.3 step 6: "*" only alone and with Expires: 0
            if len(contacts) != 1 or header_expires is None or default != 0:
                return RegisterResult(400, reason="Wildcard Contact needs Expires: 0")
            for b in alive:
                if b.call_id == call_id and cseq <= b.cseq:
                    return RegisterResult(500, reason="Out of order REGISTER")
            self._store(aor, [])
            if alive and self.on_change:
                self.on_change(aor)
            return RegisterResult(200, [])
        bindings = list(alive)
        for contact in contacts:
            exp_param = contact.params.get("expires")
            expires = default
            if exp_param is not None:
                if not (exp_param.isascii() and exp_param.isdigit()):
                    return RegisterResult(400, reason="Bad expires parameter")
                expires = int(exp_param)
            if 0 < expires < self.min_expires:
                return RegisterResult(
                    423, reason="Interval Too Brief", headers=[("Min-Expires", str(self.min_expires))]
                )
            expires = min(expires, self.max_expires)
            q = 1.0
            qp = contact.params.get("q")
            if qp:
                try:
                    q = float(qp)
                except ValueError:
                    q = 1.0
            existing = next((b for b in bindings if b.uri == contact.uri), None)
            if existing is not None:
                if existing.call_id == call_id and cseq <= existing.cseq:
                    return RegisterResult(500, reason="Out of order REGISTER")
                if expires == 0:
                    bindings.remove(existing)
                    continue
                existing.contact = contact
                existing.expires_at = now + expires
                existing.call_id = call_id
                existing.cseq = cseq
                existing.q = q
                if existing.flow is not flow:
                    existing.flow = flow
                    if _dies_with(flow):
                        flow.add_close_callback(self._drop_flow)
                continue
            if expires == 0:
                continue
            if _dies_with(flow):
                flow.add_close_callback(self._drop_flow)
            bindings.append(Binding(aor, contact, now + expires, call_id, cseq, flow, q))
        if len(bindings) > self.max_bindings:
            bindings = sorted(bindings, key=lambda b: b.expires_at)[-self.max_bindings :]
        self._store(aor, bindings)
        if self.on_change:
            self.on_change(aor)
        return RegisterResult(200, _best_first([b for b in bindings if b.expires_at > now]))
