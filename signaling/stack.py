"""The SIP user agent the gateway wires in: transports + transactions + dialogs + digest + registrar.

The gateway provides a `CredentialStore` (who may authenticate) and an `InviteHandler` (what to do with an
authenticated INVITE), starts the UDP/TCP transports and mounts `stack.websocket.handle` on its aiohttp app.

    stack = SipStack(StackConfig(domain="meetings.local"), credentials, invite_handler)
    await stack.start_udp("0.0.0.0", 5060)
    await stack.start_tcp("0.0.0.0", 5060)
    app.router.add_get("/api/asterisk/ws", stack.websocket.handle)
    ...
    await stack.close()
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import secrets
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from .call import CallState, IncomingCall
from .connlimits import ConnectionGuard, ConnectionLimits
from .dialog import Dialog, DialogError, DialogState, RequestFailed
from .digest import AuthOutcome, DigestChallenger, DigestClient, DigestCredentials, credentials_are_text
from .eager import start_eagerly
from .message import (
    DEFAULT_LIMITS,
    Headers,
    ParserLimits,
    SipParseError,
    SipRequest,
    SipResponse,
    parse_message,
)
from .registrar import Registrar
from .stats import SipCounters
from .transaction import (
    ClientTransaction,
    InviteServerTransaction,
    ServerTransaction,
    TimerSettings,
    TransactionLayer,
    new_branch,
    server_key,
)
from .transport import Flow, TcpTransport, TlsContexts, UdpTransport
from .uri import Address, SipUri, SipUriError
from .websocket import WebSocketTransport

__all__ = [
    "CallFailed",
    "CredentialStore",
    "InviteHandler",
    "LoginThrottle",
    "MessageHandler",
    "SipAccount",
    "SipStack",
    "SourceTrust",
    "StackConfig",
]

log = logging.getLogger(__name__)

AUTH_FAILED = 'SIP;cause=403;text="authentication failed"'
AUTH_THROTTLED = 'SIP;cause=403;text="too many failed authentications, retry later"'
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, MESSAGE, UPDATE"
_BODYLESS_METHODS = (b"OPTIONS ", b"REGISTER ", b"BYE ", b"CANCEL ")
SUPPORTED = {"outbound", "path", "gruu", "replaces", "timer", "ice"}


@dataclass(frozen=True, slots=True)
class SipAccount:
    """An account that may authenticate: `owner` is the application's (which meeting, which user...)."""

    username: str
    password: str
    owner: object = None


class CredentialStore(Protocol):
    async def lookup(self, username: str) -> SipAccount | None:
        """The account for a digest username, or None (unknown, or deleted: it no longer authenticates)."""
        ...


class InviteHandler(Protocol):
    async def on_invite(self, call: IncomingCall) -> None:
        """Decide: `call.answer(sdp, dialog_handler)` or `call.reject(status, text)`. 100 Trying is already sent.
        Raising answers 500; returning without a decision leaves the call pending (until the invite timeout)."""
        ...

    def on_cancel(self, call: IncomingCall) -> None:
        """The caller cancelled before the answer (487 already sent): release what was reserved."""
        ...


class SourceTrust(Protocol):
    def account_for_source(self, host: str, transport: str) -> SipAccount | None:
        """The account a new INVITE from this source address is taken as, without a digest challenge (a trunk
        peer trusted by address, e.g. Asterisk), or None: the usual challenge. Never asked about WebSocket flows."""
        ...


class LoginThrottle(Protocol):
    def admit(self, username: str, source: str) -> float:
        """0.0: the digest answer is checked (and counts as a failure until `succeeded`); more: it is refused
        unchecked with 403, and this many seconds go in its Retry-After."""
        ...

    def succeeded(self, username: str, source: str) -> None:
        """The admitted answer was no failure (right password, or only a stale nonce)."""
        ...


class MessageHandler(Protocol):
    async def on_message(self, request: SipRequest, account: SipAccount) -> int:
        """An authenticated out-of-dialog MESSAGE: return the status."""
        ...


@dataclass(slots=True)
class StackConfig:
    domain: str = "meetings.local"  # the realm, and the host part of our From when calling out
    timers: TimerSettings = field(default_factory=TimerSettings)
    limits: ParserLimits = DEFAULT_LIMITS
    user_agent: str = "meetings"
    contact_user: str = "meetings"
    advertised_host: str | None = None  # host put in Via/Contact instead of the local address
    auth_secret: bytes | None = None  # HMAC key of the nonces (random per process when None)
    nonce_lifetime: float = 300.0
    digest_algorithms: tuple[str, ...] = ("MD5",)  # challenged with, in this order (see DigestChallenger)
    invite_timeout: float = 180.0  # a call the application never decides on is ended with 480
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)  # TCP and WebSocket peers
    # What an unauthenticated source can make the server hold (see `SipStack.receive`):
    udp_max_request: int = 16 * 1024  # larger request datagrams are dropped unread
    udp_max_bodyless_request: int = 4 * 1024  # the same for OPTIONS, REGISTER, BYE, CANCEL (no body needed)
    max_transactions_per_source: int = 1000  # live server transactions per source address, then 503
    max_transactions: int = 20000  # live server transactions in all, then 503
    overload_retry_after: int = 10  # seconds, in the 503's Retry-After
    tls_client: ssl.SSLContext | None = None  # whom we trust when we connect over TLS (None: the system's CAs)


class CallFailed(RequestFailed):
    """An outgoing INVITE got a non-2xx final response."""


@dataclass(slots=True)
class _OutgoingInvite:
    tx: ClientTransaction | None = None
    provisional: asyncio.Event = field(default_factory=asyncio.Event)


def new_tag() -> str:
    return secrets.token_hex(6)


def _strip_tag(value: str) -> str:
    addr = Address.parse(value)
    addr.params.pop("tag", None)
    return str(addr)


class SipStack:
    KNOWN_METHODS = frozenset(
        {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "MESSAGE", "UPDATE", "PRACK"}
        | {"SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH"}
    )

    def __init__(
        self,
        config: StackConfig,
        credentials: CredentialStore,
        invite_handler: InviteHandler | None = None,
        message_handler: MessageHandler | None = None,
        registrar: Registrar | None = None,
        source_trust: SourceTrust | None = None,
        login_throttle: LoginThrottle | None = None,
    ) -> None:
        self.config = config
        self.source_trust = source_trust
        self.login_throttle = login_throttle
        self.credentials = credentials
        self.invite_handler = invite_handler
        self.message_handler = message_handler
        self.registrar = registrar or Registrar()
        self.transactions = TransactionLayer(config.timers, config.max_transactions_per_source, config.max_transactions)
        self.challenger = DigestChallenger(
            config.domain, config.auth_secret, config.nonce_lifetime, config.digest_algorithms
        )
        # one guard for TCP and WebSocket: the caps count a source's connections over both
        self.connection_guard = ConnectionGuard(config.connections, self.flow_in_use)
        self._flows_in_use: tuple[float, set[Flow]] = (-1.0, set())
        self.websocket = WebSocketTransport(self.receive, config.limits, guard=self.connection_guard)
        self.udp: UdpTransport | None = None
        self.tcp: TcpTransport | None = None
        self.tls: TcpTransport | None = None
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        self._calls: dict[tuple[str, ...], IncomingCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._source_cache: dict[str, str] = {}
        self._capability_headers = [("Allow", ALLOW), ("Supported", "outbound, path, replaces")]
        self._cap_logged = -3600.0  # loop time of the last "cap reached" line
        self.closed = False

    # -- life cycle -------------------------------------------------------------------------------------------
    async def start_udp(self, host: str = "0.0.0.0", port: int = 5060) -> UdpTransport:
        self.udp = await UdpTransport.start(self.receive, host, port, self.config.limits)
        return self.udp

    async def start_tcp(self, host: str = "0.0.0.0", port: int = 5060) -> TcpTransport:
        self.tcp = await TcpTransport.start(self.receive, host, port, self.config.limits, self.connection_guard)
        return self.tcp

    async def start_tls(self, host: str, port: int, server: ssl.SSLContext) -> TcpTransport:
        """SIP over TLS on host:port with our certificate (`server`); outgoing TLS trusts `config.tls_client`."""
        tls = TlsContexts(server, self._tls_client())
        self.tls = await TcpTransport.start(self.receive, host, port, self.config.limits, self.connection_guard, tls)
        return self.tls

    def _tls_client(self) -> ssl.SSLContext:
        return self.config.tls_client or ssl.create_default_context()

    async def close(self) -> None:
        """Hang up every dialog (BYE, briefly), stop transports and timers."""
        if self.closed:
            return
        self.closed = True
        byes = [d.bye() for d in list(self.dialogs.values()) if d.state is not DialogState.TERMINATED]
        if byes:
            await asyncio.wait([asyncio.ensure_future(b) for b in byes], timeout=1.0)
        for call in list(self._calls.values()):
            if call.state is CallState.PENDING:
                call.reject(503, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        self.transactions.close()
        await self.websocket.close()
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            await self.tcp.close()
        if self.tls is not None:
            await self.tls.close()
        self.connection_guard.close()

    def flow_in_use(self, flow: Flow) -> bool:
        """Whether a registration, a dialog or a call waiting for an answer rides on the connection: the
        connection guard keeps such connections however quiet they are. The set is built at most once a second
        (the guard asks about many connections at once when they time out together)."""
        now = asyncio.get_running_loop().time()
        built, flows = self._flows_in_use
        if now - built >= 1.0:
            flows = self.registrar.bound_flows()
            flows.update(dialog.flow for dialog in self.dialogs.values())
            flows.update(call.flow for call in self._calls.values())
            self._flows_in_use = (now, flows)
        return flow in flows

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _spawn_eager(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Like `_spawn`, but run at once up to the first suspension: no task when it never suspends."""
        try:
            rest = start_eagerly(coro)
        except Exception:
            log.exception("SIP task failed")
            return
        if rest is not None:
            self._spawn(rest)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP task failed", exc_info=task.exception())

    # -- addresses --------------------------------------------------------------------------------------------
    def _local_host(self, flow: Flow) -> str:
        if self.config.advertised_host:
            return self.config.advertised_host
        host = flow.local_address[0]
        if host in ("0.0.0.0", "::", ""):
            remote = flow.remote_address[0]
            host = self._source_cache.get(remote) or self._source_for(remote)
        return host

    def _source_for(self, remote: str) -> str:
        try:
            family = socket.AF_INET6 if ":" in remote else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((remote, 9))
                host = str(s.getsockname()[0])
        except OSError:
            host = "127.0.0.1"
        self._source_cache[remote] = host
        return host

    def sent_by(self, flow: Flow) -> str:
        host = self._local_host(flow)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = flow.local_address[1]
        return f"{host}:{port}" if port else host

    def new_via(self, flow: Flow) -> str:
        return f"SIP/2.0/{flow.transport} {self.sent_by(flow)};branch={new_branch()};rport"

    def contact_for(self, flow: Flow) -> str:
        t = flow.transport
        suffix = "" if t == "UDP" else f";transport={t.lower()}"
        return f"<sip:{self.config.contact_user}@{self.sent_by(flow)}{suffix}>"

    def capability_headers(self) -> list[tuple[str, str]]:
        return self._capability_headers

    async def flow_for(self, uri: SipUri) -> Flow:
        """A flow to reach a URI that has no connection of its own (phones, Asterisk)."""
        transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
        host = uri.host_no_brackets
        if host.endswith(".invalid"):
            raise DialogError(f"{host} is only reachable over its own connection")
        port = uri.port or 5060
        try:
            ipaddress.ip_address(host)
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            if not infos:
                raise DialogError(f"cannot resolve {host}") from None
            host = str(infos[0][4][0])
        if transport == "tls":
            if self.tls is None:  # not listening on TLS: a transport for our outgoing connections only
                tls = TlsContexts(None, self._tls_client())
                self.tls = await TcpTransport.start(
                    self.receive, "0.0.0.0", 0, self.config.limits, self.connection_guard, tls
                )
            return await self.tls.connect(host, port, server_name=uri.host_no_brackets)
        if transport == "tcp":
            if self.tcp is None:
                self.tcp = await TcpTransport.start(
                    self.receive, "0.0.0.0", 0, self.config.limits, self.connection_guard
                )
            return await self.tcp.connect(host, port)
        if transport == "udp":
            if self.udp is None:
                self.udp = await UdpTransport.start(self.receive, "0.0.0.0", 0, self.config.limits)
            return self.udp.flow_to(host, port)
        raise DialogError(f"no transport {transport!r} to reach {uri}")

    # -- receiving --------------------------------------------------------------------------------------------
    @property
    def counters(self) -> SipCounters:
        """Requests received and responses sent (one set, kept by the transaction layer)."""
        return self.transactions.counters

    def receive(self, data: bytes, flow: Flow) -> None:
        """The transports' receiver: one framed message from `flow`."""
        if not flow.reliable:
            if len(data) > self.config.udp_max_bodyless_request and self._oversized_datagram(data):
                return
            tx = self.transactions.match_datagram(data)
            if tx is not None:  # a UDP retransmission, byte for byte: absorbed without a parse
                tx.receive_request(tx.request)
                return
        try:
            msg = parse_message(data, self.config.limits, datagram=not flow.reliable)
        except SipParseError as e:
            req = e.request
            if req is not None and req.method != "ACK":
                try:
                    reason = "Version Not Supported" if e.status == 505 else "Bad Request"
                    flow.send(req.create_response(e.status, f"{reason} ({e.reason[:80]})").serialize())
                    self.counters.response_sent(req.method, e.status)
                except Exception:
                    log.debug("could not answer an unparsable request", exc_info=True)
            log.info("unparsable SIP message from %s: %s", flow, e.reason)
            return
        except Exception:
            log.exception("parser failure on a message from %s", flow)
            return
        try:
            if isinstance(msg, SipRequest):
                self.counters.request_received(msg.method)
                self._receive_request(msg, flow)
                if not flow.reliable:
                    self.transactions.remember_datagram(msg, data)
            else:
                self._receive_response(msg, flow)
        except (SipUriError, ValueError) as e:
            log.info("bad SIP message from %s: %s", flow, e)
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                flow.send(msg.create_response(400, f"Bad Request ({str(e)[:80]})").serialize())
                self.counters.response_sent(msg.method, 400)

    def _oversized_datagram(self, data: bytes) -> bool:
        """A request datagram over the size allowed for its method, dropped before any parse. RFC 3261 section
        18.1.1 sends requests over 1300 bytes by TCP; a request with no body needs a few hundred bytes (4 KiB
        allows long Route/Path sets), and one with a body (an INVITE's SDP) a few KiB: a larger one over UDP is
        not from a conforming client and would only cost memory. Responses are not limited here."""
        if data.startswith(b"SIP/"):
            return False
        if len(data) <= self.config.udp_max_request and not data.startswith(_BODYLESS_METHODS):
            return False
        log.debug("dropped a %d-byte request datagram from %s", len(data), data[:12])
        return True

    def _answer(self, flow: Flow, response: SipResponse, request: SipRequest) -> None:
        """Answer without a server transaction (section 8.2.7; section 26.3.2.4 for challenges): nothing is held
        for Timer J; a retransmission over UDP gets the same bytes while they are among the last few thousand."""
        data = response.serialize()
        flow.send(data)
        self.counters.response_sent(request.method, response.status)
        if not flow.reliable:
            self.transactions.remember_answer(request, data)

    def _new_transaction(self, req: SipRequest, flow: Flow) -> ServerTransaction | None:
        """A server transaction for `req`, or None when the source (or the server) holds too many: then the
        request has been answered 503 with a Retry-After, statelessly."""
        source = flow.remote_address[0]
        if not self.transactions.admits(source):
            retry = str(self.config.overload_retry_after)
            self._answer(flow, req.create_response(503, headers=[("Retry-After", retry)]), req)
            now = asyncio.get_running_loop().time()
            if now - self._cap_logged > 60:  # one line a minute, not one per request
                self._cap_logged = now
                log.warning("server transaction cap reached (source %s): answering 503", source)
            return None
        return self.transactions.create_server(req, flow)

    def _receive_request(self, req: SipRequest, flow: Flow) -> None:
        if not flow.reliable:
            via = req.via
            src_host, src_port = flow.remote_address
            if "rport" in via.params or via.host != src_host:
                via.params["received"] = src_host
                if "rport" in via.params:
                    via.params["rport"] = str(src_port)
                req.set_top_via(via)
        tx = self.transactions.match_request(req)
        if tx is not None:
            tx.receive_request(req)
            return
        method = req.method
        if method == "ACK":
            self._receive_ack(req)
            return
        if not flow.reliable:
            answer = self.transactions.recent_answer(req)
            if answer is not None:  # a retransmission of a request answered statelessly
                flow.send(answer)
                return
        if method == "CANCEL":
            self._receive_cancel(req, flow)
            return
        # What can be answered at once is answered statelessly; a transaction is made only for what the
        # application (authentication, registrar, calls, dialogs) acts on.
        if method not in self.KNOWN_METHODS:
            self._answer(flow, req.create_response(501, headers=self._capability_headers), req)
            return
        require = req.headers.values("require")
        if require:
            unsupported = [r for r in require if r.lower() not in SUPPORTED]
            if unsupported:
                self._answer(flow, req.create_response(420, headers=[("Unsupported", ", ".join(unsupported))]), req)
                return
        if not req.uri[:5].lower().startswith(("sip:", "sips:")):
            self._answer(flow, req.create_response(416), req)  # RFC 4475 unkscm, novelsc
            return
        to_tag = req.to_tag
        if to_tag:
            dialog = self.dialogs.get((req.call_id, to_tag, req.from_tag or ""))
            if dialog is None:
                self._answer(flow, req.create_response(481), req)
                return
            tx = self._new_transaction(req, flow)
            if tx is not None:
                self._spawn(dialog.receive_request(req, tx))
            return
        if method == "REGISTER":
            self._with_auth(req, flow, self._register)
        elif method == "INVITE":
            if self.invite_handler is None:
                self._answer(flow, req.create_response(480), req)
                return
            trusted = self._trusted_source(flow)
            if trusted is not None:
                tx = self._new_transaction(req, flow)
                if tx is not None:
                    self._invite(req, tx, trusted)
            else:
                self._with_auth(req, flow, self._invite)
        elif method == "OPTIONS":
            headers = [*self._capability_headers, ("Accept", "application/sdp")]
            self._answer(flow, req.create_response(200, headers=headers), req)
        elif method == "MESSAGE" and self.message_handler is not None:
            self._with_auth(req, flow, self._message)
        elif method == "BYE":
            self._answer(flow, req.create_response(481), req)
        else:
            self._answer(flow, req.create_response(405, headers=self._capability_headers), req)

    def _receive_ack(self, req: SipRequest) -> None:
        dialog = self.dialogs.get((req.call_id, req.to_tag or "", req.from_tag or ""))
        if dialog is not None:
            dialog.receive_ack(req)

    def _receive_cancel(self, req: SipRequest, flow: Flow) -> None:
        key = server_key(req)
        invite_tx = self.transactions.server.get((key[0], key[1], "INVITE"))
        if invite_tx is None:
            self._answer(flow, req.create_response(481), req)
            return
        cancel_tx = self._new_transaction(req, flow)
        if cancel_tx is None:
            return
        call = self._calls.get(invite_tx.key)
        to_tag = call.dialog.local_tag if call is not None else None
        cancel_tx.respond(req.create_response(200, to_tag=to_tag))
        if invite_tx.final_sent:
            return
        invite_tx.respond(invite_tx.request.create_response(487, to_tag=to_tag))
        if call is not None:
            self._call_done(call)
            call._cancel()
            if self.invite_handler is not None:
                try:
                    self.invite_handler.on_cancel(call)
                except Exception:
                    log.exception("on_cancel failed")

    def _receive_response(self, resp: SipResponse, flow: Flow) -> None:
        tx = self.transactions.match_response(resp)
        if tx is not None:
            tx.receive_response(resp)
            return
        if 200 <= resp.status < 300 and resp.cseq.method == "INVITE":
            dialog = self.dialogs.get((resp.call_id, resp.from_tag or "", resp.to_tag or ""))
            if dialog is not None:
                dialog.resend_ack(resp)

    # -- authentication ---------------------------------------------------------------------------------------
    def _trusted_source(self, flow: Flow) -> SipAccount | None:
        if self.source_trust is None or flow.transport.startswith("WS"):
            return None
        try:
            return self.source_trust.account_for_source(flow.remote_address[0], flow.transport)
        except Exception:
            log.exception("source trust lookup failed")
            return None

    def _challenge(self, req: SipRequest, tx: ServerTransaction, stale: bool = False) -> None:
        tx.respond(self._challenge_response(req, stale))

    def _challenge_response(self, req: SipRequest, stale: bool = False) -> SipResponse:
        headers = [("WWW-Authenticate", c) for c in self.challenger.challenges(stale)]
        return req.create_response(401, to_tag=new_tag(), headers=headers)

    def _with_auth(
        self,
        req: SipRequest,
        flow: Flow,
        then: Callable[[SipRequest, ServerTransaction, SipAccount], Coroutine[Any, Any, None] | None],
    ) -> None:
        values = req.headers.get_all("authorization")
        params = self.challenger.credentials_for_realm(values) if values else None
        if params is None:
            # challenged statelessly (section 26.3.2.4): an unauthenticated request leaves nothing behind
            self._answer(flow, self._challenge_response(req), req)
            return
        tx = self._new_transaction(req, flow)
        if tx is not None:
            self._spawn_eager(self._authenticate(req, tx, params, then))

    async def _authenticate(
        self,
        req: SipRequest,
        tx: ServerTransaction,
        params: dict[str, str],
        then: Callable[[SipRequest, ServerTransaction, SipAccount], Coroutine[Any, Any, None] | None],
    ) -> None:
        username = params.get("username", "")
        source = tx.flow.remote_address[0]
        throttle = self.login_throttle
        if throttle is not None:
            wait = throttle.admit(username, source)
            if wait:
                # 403, not 503: the server is fine, these credentials may not be tried now (SIP has no 429).
                headers = [("Retry-After", str(max(1, math.ceil(wait)))), ("Reason", AUTH_THROTTLED)]
                tx.respond(req.create_response(403, headers=headers))
                return
        # Bytes that were not UTF-8 (or control characters) are nobody's name: refused like a wrong password,
        # before they reach the account lookup (its database query would fail on them).
        account = None
        if credentials_are_text(params):
            try:
                account = await self.credentials.lookup(username)
            except Exception:
                log.exception("credential lookup failed")
                tx.respond(req.create_response(500))
                return
        if account is None:
            tx.respond(req.create_response(403, headers=[("Reason", AUTH_FAILED)]))
            return
        check = self.challenger.verify(params, req.method, account.password, req.body)
        if check.outcome is AuthOutcome.STALE:
            if throttle is not None:
                throttle.succeeded(username, source)
            self._challenge(req, tx, stale=True)
            return
        if check.outcome is not AuthOutcome.OK:
            tx.respond(req.create_response(403, headers=[("Reason", AUTH_FAILED)]))
            return
        if throttle is not None:
            throttle.succeeded(username, source)
        result = then(req, tx, account)
        if result is not None:
            await result

    # -- REGISTER ---------------------------------------------------------------------------------------------
    def _register(self, req: SipRequest, tx: ServerTransaction, account: SipAccount) -> None:
        aor = req.to.uri.user or ""
        if aor != account.username:
            tx.respond(req.create_response(403, "Forbidden (To does not match the credentials)"))
            return
        result = self.registrar.register(aor, req, tx.flow)
        headers: list[tuple[str, str]] = list(result.headers)
        if result.status == 200:
            for b in result.bindings:
                headers.append(("Contact", b.contact_header()))
        tx.respond(req.create_response(result.status, result.reason, to_tag=new_tag(), headers=headers))

    # -- out-of-dialog MESSAGE --------------------------------------------------------------------------------
    async def _message(self, req: SipRequest, tx: ServerTransaction, account: SipAccount) -> None:
        assert self.message_handler is not None
        try:
            status = await self.message_handler.on_message(req, account)
        except Exception:
            log.exception("on_message failed")
            status = 500
        tx.respond(req.create_response(status, to_tag=new_tag()))

    # -- INVITE (UAS) -----------------------------------------------------------------------------------------
    def _invite(self, req: SipRequest, tx: ServerTransaction, account: SipAccount) -> None:
        assert isinstance(tx, InviteServerTransaction)
        if not req.headers.get("contact"):
            tx.respond(req.create_response(400, "Missing Contact"))
            return
        try:
            remote_target = Address.parse(req.headers.values("contact")[0]).uri
            remote_uri = _strip_tag(req.headers.get("from") or "")
        except (SipUriError, IndexError):
            tx.respond(req.create_response(400, "Bad Contact"))
            return
        dialog = Dialog(
            self,
            call_id=req.call_id,
            local_tag=new_tag(),
            remote_tag=req.from_tag,
            local_uri=req.headers.get("to") or "",
            remote_uri=remote_uri,
            remote_target=remote_target,
            route_set=req.headers.values("record-route"),
            local_seq=secrets.randbelow(10_000),
            remote_seq=req.cseq.seq,
            flow=tx.flow,
            is_uas=True,
        )
        dialog.initial_request = req
        dialog.account = account
        call = IncomingCall(self, req, tx, account, dialog)
        self._calls[tx.key] = call
        tx.respond(req.create_response(100))
        self._spawn(self._run_invite_handler(call))

    async def _run_invite_handler(self, call: IncomingCall) -> None:
        assert self.invite_handler is not None
        try:
            await self.invite_handler.on_invite(call)
        except Exception:
            log.exception("on_invite failed")
            if call.state is CallState.PENDING:
                call.reject(500, "internal error")
            return
        if call.state is CallState.PENDING:
            await asyncio.sleep(self.config.invite_timeout)
            if call.state is CallState.PENDING:
                call.reject(480, "no answer")

    def _call_done(self, call: IncomingCall) -> None:
        self._calls.pop(call.transaction.key, None)

    def _add_dialog(self, dialog: Dialog) -> None:
        self.dialogs[dialog.id] = dialog
        if dialog.flow.is_connection:
            dialog.flow.add_close_callback(self._flow_closed)

    def _forget_dialog(self, dialog: Dialog) -> None:
        if self.dialogs.get(dialog.id) is dialog:
            del self.dialogs[dialog.id]

    def _flow_closed(self, flow: Flow) -> None:
        if not flow.transport.startswith("WS"):
            return  # a TCP peer may reconnect; its dialogs live on
        for dialog in [d for d in self.dialogs.values() if d.flow is flow]:
            dialog._terminate("transport-closed")

    # -- sending (UAC) ----------------------------------------------------------------------------------------
    async def transact(
        self,
        request: SipRequest,
        flow: Flow,
        credentials: DigestCredentials | None = None,
        on_provisional: Callable[[SipResponse], None] | None = None,
        on_transaction: Callable[[ClientTransaction], None] | None = None,
    ) -> tuple[SipResponse, ClientTransaction, SipRequest]:
        """Send a request in a client transaction; answer one 401/407 with `credentials`. Returns the final
        response, its transaction and the request actually sent (its CSeq may have grown)."""
        retried = False
        while True:
            tx = self.transactions.create_client(request, flow)
            tx.on_provisional = on_provisional
            if on_transaction is not None:
                on_transaction(tx)
            tx.start()
            response = await asyncio.shield(tx.final)
            if response.status in (401, 407) and credentials is not None and not retried:
                name = "www-authenticate" if response.status == 401 else "proxy-authenticate"
                challenge = DigestClient.pick_challenge(response.headers.get_all(name))
                value = (
                    DigestClient(credentials).authorization(challenge, request.method, request.uri, request.body)
                    if challenge
                    else None
                )
                if value is None:
                    return response, tx, request
                retried = True
                h = request.headers.copy()
                h.remove("via")
                new = SipRequest(request.method, request.uri, Headers(), request.body)
                new.headers.add("Via", self.new_via(flow))
                for k, v in h.items():
                    new.headers.add(k, v)
                new.headers.set("CSeq", f"{request.cseq.seq + 1} {request.method}")
                new.headers.set("Authorization" if response.status == 401 else "Proxy-Authorization", value)
                request = new
                continue
            return response, tx, request

    def _new_request(
        self,
        method: str,
        uri: str,
        flow: Flow,
        *,
        from_uri: str | None,
        to_uri: str | None,
        body: bytes,
        content_type: str | None,
        headers: list[tuple[str, str]] | None,
        local_tag: str,
        call_id: str,
    ) -> SipRequest:
        h = Headers()
        h.add("Via", self.new_via(flow))
        h.add("Max-Forwards", "70")
        h.add("From", f"{from_uri or f'<sip:{self.config.contact_user}@{self.config.domain}>'};tag={local_tag}")
        h.add("To", to_uri or f"<{uri}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", f"1 {method}")
        if method in ("INVITE", "SUBSCRIBE", "REFER"):
            h.add("Contact", self.contact_for(flow))
        h.add("User-Agent", self.config.user_agent)
        if method == "INVITE":
            for name, value in self._capability_headers:
                h.add(name, value)
        if content_type is not None:
            h.add("Content-Type", content_type)
        for name, value in headers or ():
            h.add(name, value)
        return SipRequest(method, uri, h, body)

    async def request(
        self,
        method: str,
        target: str | SipUri,
        *,
        flow: Flow | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        from_uri: str | None = None,
        to_uri: str | None = None,
        credentials: DigestCredentials | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipResponse:
        """An out-of-dialog request (MESSAGE, OPTIONS ...): its final response."""
        uri = target if isinstance(target, SipUri) else SipUri.parse(target)
        flow = flow or await self.flow_for(uri)
        req = self._new_request(
            method,
            str(uri),
            flow,
            from_uri=from_uri,
            to_uri=to_uri,
            body=body,
            content_type=content_type,
            headers=headers,
            local_tag=new_tag(),
            call_id=secrets.token_hex(12),
        )
        response, _, _ = await self.transact(req, flow, credentials)
        return response

    async def message_user(
        self, username: str, body: bytes, content_type: str = "application/json"
    ) -> list[SipResponse]:
        """A MESSAGE to every registered contact of `username` (over the connection it registered on)."""
        bindings = self.registrar.lookup(username)
        results = await asyncio.gather(
            *(
                self.request(
                    "MESSAGE",
                    b.uri,
                    flow=b.flow if b.flow is not None and b.flow.alive else None,
                    body=body,
                    content_type=content_type,
                    to_uri=f"<sip:{username}@{self.config.domain}>",
                )
                for b in bindings
            ),
            return_exceptions=True,
        )
        return [r for r in results if isinstance(r, SipResponse)]

    async def invite(
        self,
        target: str | SipUri,
        sdp_offer: bytes,
        *,
        flow: Flow | None = None,
        from_uri: str | None = None,
        to_uri: str | None = None,
        credentials: DigestCredentials | None = None,
        headers: list[tuple[str, str]] | None = None,
        handler: Any = None,
        content_type: str = "application/sdp",
        on_provisional: Callable[[SipResponse], None] | None = None,
    ) -> Dialog:
        """Call out (UAC): INVITE with an offer, digest on 401/407, ACK the 2xx; the returned dialog's
        `initial_response.body` is the answer. Non-2xx raises CallFailed. Cancelling the awaiting task sends
        CANCEL (after the first provisional response, section 9.1) and ends the call."""
        uri = target if isinstance(target, SipUri) else SipUri.parse(target)
        flow = flow or await self.flow_for(uri)
        local_tag = new_tag()
        call_id = secrets.token_hex(12)
        req = self._new_request(
            "INVITE",
            str(uri),
            flow,
            from_uri=from_uri,
            to_uri=to_uri,
            body=sdp_offer,
            content_type=content_type,
            headers=headers,
            local_tag=local_tag,
            call_id=call_id,
        )
        state = _OutgoingInvite()

        def provisional(resp: SipResponse) -> None:
            state.provisional.set()
            if on_provisional is not None:
                on_provisional(resp)

        def got_tx(tx: ClientTransaction) -> None:
            state.tx = tx

        try:
            response, tx, sent = await self.transact(req, flow, credentials, provisional, got_tx)
        except asyncio.CancelledError:
            self._spawn(self._cancel_invite(state, flow, handler, credentials))
            raise
        if not 200 <= response.status < 300:
            raise CallFailed(response)
        dialog = self._uac_dialog(sent, response, flow, handler, credentials)
        dialog._send_ack(sent.cseq.seq, tx)
        return dialog

    def _uac_dialog(
        self,
        sent: SipRequest,
        response: SipResponse,
        flow: Flow,
        handler: Any,
        credentials: DigestCredentials | None,
    ) -> Dialog:
        contact = response.headers.values("contact")
        try:
            target = Address.parse(contact[0]).uri if contact else sent.request_uri
        except SipUriError:
            target = sent.request_uri
        dialog = Dialog(
            self,
            call_id=sent.call_id,
            local_tag=sent.from_tag or "",
            remote_tag=response.to_tag,
            local_uri=_strip_tag(sent.headers.get("from") or ""),
            remote_uri=_strip_tag(sent.headers.get("to") or ""),
            remote_target=target,
            route_set=list(reversed(response.headers.values("record-route"))),
            local_seq=sent.cseq.seq,
            remote_seq=None,
            flow=flow,
            is_uas=False,
            credentials=credentials,
        )
        dialog.initial_request = sent
        dialog.initial_response = response
        if handler is not None:
            dialog.handler = handler
        dialog.state = DialogState.CONFIRMED
        dialog.confirmed.set()
        self._add_dialog(dialog)
        return dialog

    async def _cancel_invite(
        self, state: _OutgoingInvite, flow: Flow, handler: Any, credentials: DigestCredentials | None
    ) -> None:
        tx = state.tx
        if tx is None:
            return
        timers = self.config.timers
        if not tx.final.done():
            # section 9.1: no CANCEL before a provisional response
            waiter: asyncio.Future[Any] = asyncio.ensure_future(state.provisional.wait())
            final: asyncio.Future[Any] = tx.final
            await asyncio.wait([waiter, final], timeout=timers.b, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if not tx.final.done() and tx.provisional_received:
            inv = tx.request
            h = Headers()
            h.add("Via", inv.headers.values("via")[0])
            for route in inv.headers.get_all("route"):
                h.add("Route", route)
            h.add("Max-Forwards", "70")
            h.add("From", inv.headers.get("from") or "")
            h.add("To", inv.headers.get("to") or "")
            h.add("Call-ID", inv.call_id)
            h.add("CSeq", f"{inv.cseq.seq} CANCEL")
            cancel = SipRequest("CANCEL", inv.uri, h)
            cancel_tx = self.transactions.create_client(cancel, flow)
            cancel_tx.start()
            try:
                await asyncio.wait_for(asyncio.shield(tx.final), timers.b)
            except TimeoutError:
                tx.terminate()
        if tx.final.done():
            response = tx.final.result()
            if 200 <= response.status < 300:
                # the answer crossed our CANCEL: confirm and hang up at once
                dialog = self._uac_dialog(tx.request, response, flow, handler, credentials)
                dialog._send_ack(tx.request.cseq.seq, tx)
                await dialog.bye()
