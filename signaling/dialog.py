"""Dialogs (RFC 3261 section 12, plus sections 13-15 for what happens inside one).

A `Dialog` is identified by Call-ID, local tag and remote tag. It keeps the route set, the CSeq numbers, the
remote target (refreshed by re-INVITE and UPDATE) and the `Flow` it lives on, so that in-dialog requests to a
WebSocket peer whose Contact is `*.invalid` go back over its connection.

The application talks to a dialog with `reinvite` (or `reinvite_for_offer`, where the peer offers), `update`,
`message`, `info`, `options`, `bye`, and hears from it through a `DialogHandler` (`BaseDialogHandler` has do-nothing
defaults).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from .digest import DigestCredentials
from .message import Headers, SipRequest, SipResponse
from .transaction import ClientTransaction, ServerTransaction
from .transport import Flow
from .uri import Address, SipUri, SipUriError

if TYPE_CHECKING:
    from .stack import SipStack

__all__ = ["BaseDialogHandler", "Dialog", "DialogError", "DialogHandler", "DialogState", "RequestFailed"]

log = logging.getLogger(__name__)


#: the longest a re-INVITE refused with 500 and a Retry-After waits before it is tried again (RFC 3261 section 14.2
#: has the peer pick 0-10 s)
MAX_RETRY_AFTER = 10.0


def _retry_after(response: SipResponse) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value.split(";")[0].split("(")[0].strip())
    except ValueError:
        return None


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"  # the UAS got the ACK / the UAC sent it
    TERMINATED = "terminated"


class DialogError(Exception):
    """The dialog cannot do that (terminated, request pending ...)."""


class RequestFailed(DialogError):
    """A request in the dialog got a non-2xx final response (or timed out: 408)."""

    def __init__(self, response: SipResponse) -> None:
        super().__init__(f"{response.status} {response.reason}")
        self.response = response


class OfferPending(Exception):
    """Raised by a handler's on_offer while an offer of its own is outstanding: the request is answered 491 Request
    Pending (RFC 3261 section 14.2), and the peer tries again later."""


class DialogHandler(Protocol):
    """What the application hears from a dialog. Subclass `BaseDialogHandler` to get defaults."""

    def on_confirmed(self, dialog: Dialog) -> None:
        """The ACK of the initial INVITE arrived: the application may now send re-INVITEs."""

    async def on_offer(self, dialog: Dialog, offer: bytes, request: SipRequest) -> bytes | None:
        """A re-INVITE or UPDATE brought an SDP offer: return the answer, or None to refuse it (488); raise
        OfferPending while an offer of the application's own is being made (491)."""

    async def on_info(self, dialog: Dialog, request: SipRequest) -> int:
        """INFO (e.g. DTMF): return the status to answer with."""

    async def on_message(self, dialog: Dialog, request: SipRequest) -> int:
        """MESSAGE: return the status to answer with."""

    def on_bye(self, dialog: Dialog, request: SipRequest) -> None:
        """The peer hung up (on_terminated follows)."""

    def on_terminated(self, dialog: Dialog, reason: str) -> None:
        """The dialog is over: "remote-bye", "local-bye", "ack-timeout", "transport-closed", "timeout", "closed"."""


class BaseDialogHandler:
    def on_confirmed(self, dialog: Dialog) -> None:
        pass

    async def on_offer(self, dialog: Dialog, offer: bytes, request: SipRequest) -> bytes | None:
        return None

    async def on_info(self, dialog: Dialog, request: SipRequest) -> int:
        return 200

    async def on_message(self, dialog: Dialog, request: SipRequest) -> int:
        return 200

    def on_bye(self, dialog: Dialog, request: SipRequest) -> None:
        pass

    def on_terminated(self, dialog: Dialog, reason: str) -> None:
        pass


class Dialog:
    """One dialog, UAS or UAC side."""

    def __init__(
        self,
        stack: SipStack,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_uri: str,
        remote_uri: str,
        remote_target: SipUri,
        route_set: list[str],
        local_seq: int,
        remote_seq: int | None,
        flow: Flow,
        is_uas: bool,
        credentials: DigestCredentials | None = None,
    ) -> None:
        self.stack = stack
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.flow = flow
        self.is_uas = is_uas
        self.credentials = credentials
        self.state = DialogState.EARLY
        self.handler: DialogHandler = BaseDialogHandler()
        self.confirmed = asyncio.Event()
        self.terminated = asyncio.Event()
        self.termination_reason: str | None = None
        self.initial_request: SipRequest | None = None
        self.initial_response: SipResponse | None = None
        self.account: object = None  # the authenticated SipAccount of a UAS dialog
        self._invite_lock = asyncio.Lock()
        self._outgoing_invite = False
        self._incoming_invite: ServerTransaction | None = None
        # 2xx retransmission (UAS) and ACK retransmission (UAC) state
        self._pending_2xx: tuple[int, bytes] | None = None  # (cseq, response bytes)
        self._retx_handle: asyncio.TimerHandle | None = None
        self._ack_timeout: asyncio.TimerHandle | None = None
        self._acks: dict[int, bytes] = {}
        self._loop = asyncio.get_running_loop()

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag or "")

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.state.value}>"

    # -- building requests (section 12.2.1.1) ---------------------------------------------------------------
    def create_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        h = Headers()
        h.add("Via", self.stack.new_via(self.flow))
        for route in self.route_set:
            h.add("Route", route)
        h.add("Max-Forwards", "70")
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE"):
            h.add("Contact", self.stack.contact_for(self.flow))
        if method != "ACK":
            h.add("User-Agent", self.stack.config.user_agent)
        if content_type is not None:
            h.add("Content-Type", content_type)
        for name, value in headers or ():
            h.add(name, value)
        return SipRequest(method, str(self.remote_target), h, body)

    async def _flow(self) -> Flow:
        if self.flow.alive:
            return self.flow
        if self.flow.is_connection and self.flow.transport.startswith("WS"):
            raise DialogError("the WebSocket connection of this dialog is closed")
        self.flow = await self.stack.flow_for(self.remote_target)
        return self.flow

    # -- requests from us ----------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request in the dialog and return its final response (any status)."""
        if self.state is DialogState.TERMINATED:
            raise DialogError("dialog terminated")
        if method in ("INVITE", "ACK", "CANCEL"):
            raise DialogError(f"use reinvite()/bye() rather than request({method!r})")
        flow = await self._flow()
        req = self.create_request(method, body, content_type, headers)
        response, _, sent = await self.stack.transact(req, flow, self.credentials)
        self.local_seq = max(self.local_seq, sent.cseq.seq)
        if response.status in (408, 481) and method != "BYE":
            self._terminate("timeout" if response.status == 408 else "gone")
        return response

    async def message(self, body: bytes, content_type: str = "application/json") -> SipResponse:
        return await self._checked("MESSAGE", body, content_type)

    async def info(self, body: bytes, content_type: str = "application/dtmf-relay") -> SipResponse:
        return await self._checked("INFO", body, content_type)

    async def options(self) -> SipResponse:
        return await self.request("OPTIONS")

    async def update(self, sdp: bytes, content_type: str = "application/sdp") -> bytes:
        """Send an UPDATE with an offer; returns the answer."""
        response = await self._checked("UPDATE", sdp, content_type)
        self._refresh_target(response)
        return response.body

    async def _checked(self, method: str, body: bytes, content_type: str) -> SipResponse:
        response = await self.request(method, body, content_type)
        if not 200 <= response.status < 300:
            raise RequestFailed(response)
        return response

    async def reinvite(
        self, sdp: bytes, content_type: str = "application/sdp", headers: list[tuple[str, str]] | None = None
    ) -> bytes:
        """Send a re-INVITE with an SDP offer, ACK its 2xx and return the answer. On 491 (glare) it waits the
        random time of section 14.1 and tries again, twice at most. Other failures raise RequestFailed."""
        async with self._invite_lock:
            response, tx, cseq = await self._invite(sdp, content_type, headers)
            self._send_ack(cseq, tx)
            return response.body

    async def reinvite_for_offer(self, answer: Callable[[bytes], Awaitable[bytes]]) -> bytes:
        """Send a re-INVITE without SDP: the peer makes a fresh offer in its 2xx (RFC 3261 section 14.1; a browser
        gathers anew), `answer` turns it into our answer, which goes in the ACK. Returns the peer's offer. If
        `answer` fails, the ACK goes without SDP and its error is raised: the caller should end the call."""
        async with self._invite_lock:
            response, tx, cseq = await self._invite(b"", None, None)
            try:
                answer_sdp = await answer(response.body)
            except BaseException:
                self._send_ack(cseq, tx)
                raise
            self._send_ack(cseq, tx, answer_sdp)
            return response.body

    async def _invite(
        self, body: bytes, content_type: str | None, headers: list[tuple[str, str]] | None
    ) -> tuple[SipResponse, ClientTransaction | None, int]:
        """One re-INVITE transaction, retried on 491: its 2xx (not yet ACKed), transaction and CSeq."""
        if not self.confirmed.is_set() and self.is_uas:
            # sip.js drops a re-INVITE that arrives before its ACK was processed
            await self.confirmed.wait()
        for attempt in range(3):
            if self.state is DialogState.TERMINATED:
                raise DialogError("dialog terminated")
            flow = await self._flow()
            req = self.create_request("INVITE", body, content_type, headers)
            self._outgoing_invite = True
            try:
                response, tx, sent = await self.stack.transact(req, flow, self.credentials)
            finally:
                self._outgoing_invite = False
            self.local_seq = max(self.local_seq, sent.cseq.seq)
            if 200 <= response.status < 300:
                self._refresh_target(response)
                return response, tx, sent.cseq.seq
            if response.status == 491 and attempt < 2:
                delay = random.uniform(2.1, 4.0) if self.is_uas else random.uniform(0.0, 2.0)
                await asyncio.sleep(delay * self.stack.config.timers.t1 / 0.5)
                continue
            retry_after = _retry_after(response)
            if response.status == 500 and retry_after is not None and attempt < 2:
                # the peer is still busy with the last offer/answer (RFC 3261 section 14.2, RFC 6337 section 4.3:
                # sip.js while it applies the answer an ACK brought): again after the time it asks for
                await asyncio.sleep(min(retry_after, MAX_RETRY_AFTER))
                continue
            if response.status in (408, 481):
                self._terminate("timeout" if response.status == 408 else "gone")
            raise RequestFailed(response)
        raise RequestFailed(response)  # pragma: no cover - loop always returns or raises

    def _send_ack(self, cseq: int, tx: ClientTransaction | None, sdp: bytes = b"") -> None:
        content_type = "application/sdp" if sdp else None
        ack = self.create_request("ACK", sdp, content_type, cseq=cseq).serialize()
        self._acks = {cseq: ack}
        self.flow.send(ack)
        if tx is not None:

            def resend(_response: SipResponse) -> None:
                self.flow.send(ack)

            tx.on_retransmitted_2xx = resend

    def resend_ack(self, response: SipResponse) -> None:
        """A retransmitted 2xx reached the core after its transaction ended: repeat our ACK."""
        ack = self._acks.get(response.cseq.seq)
        if ack is not None:
            self.flow.send(ack)

    async def bye(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Hang up (`headers`: e.g. a Reason). The dialog ends whatever the answer (or none) to the BYE."""
        if self.state is DialogState.TERMINATED:
            return
        try:
            if self.flow.alive or not self.flow.is_connection:
                flow = await self._flow()
                req = self.create_request("BYE", headers=headers)
                self._terminate("local-bye")
                await self.stack.transact(req, flow, self.credentials)
        except (DialogError, OSError) as e:
            log.debug("BYE not delivered: %s", e)
        finally:
            self._terminate("local-bye")

    # -- 2xx retransmission and ACK (UAS side, section 13.3.1.4) ---------------------------------------------
    def _start_2xx(self, cseq: int, data: bytes, initial: bool) -> None:
        self._pending_2xx = (cseq, data)
        t = self.stack.config.timers
        if not self.flow.reliable:
            self._schedule_retx(t.t1)
        self._ack_timeout = self._loop.call_later(t.b, self._ack_timed_out, initial)

    def _schedule_retx(self, interval: float) -> None:
        self._retx_handle = self._loop.call_later(interval, self._retransmit_2xx, interval)

    def _retransmit_2xx(self, interval: float) -> None:
        if self._pending_2xx is None or self.state is DialogState.TERMINATED:
            return
        self.flow.send(self._pending_2xx[1])
        self._schedule_retx(min(2 * interval, self.stack.config.timers.t2))

    def _stop_2xx(self) -> None:
        self._pending_2xx = None
        if self._retx_handle is not None:
            self._retx_handle.cancel()
            self._retx_handle = None
        if self._ack_timeout is not None:
            self._ack_timeout.cancel()
            self._ack_timeout = None

    def _ack_timed_out(self, initial: bool) -> None:
        self._stop_2xx()
        if initial and not self.confirmed.is_set():
            log.info("no ACK for the 2xx of %s: hanging up", self.call_id)
            self._loop.create_task(self._bye_after_ack_timeout())

    async def _bye_after_ack_timeout(self) -> None:
        self.confirmed.set()  # the BYE must not wait for it
        try:
            flow = await self._flow()
            req = self.create_request("BYE")
            self._terminate("ack-timeout")
            await self.stack.transact(req, flow, self.credentials)
        except Exception as e:
            log.debug("BYE after ACK timeout failed: %s", e)
        self._terminate("ack-timeout")

    # -- requests from the peer ------------------------------------------------------------------------------
    def receive_ack(self, request: SipRequest) -> None:
        pending = self._pending_2xx
        if pending is not None and request.cseq.seq == pending[0]:
            self._stop_2xx()
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED
        if not self.confirmed.is_set():
            self.confirmed.set()
            try:
                self.handler.on_confirmed(self)
            except Exception:
                log.exception("on_confirmed failed")

    async def receive_request(self, request: SipRequest, tx: ServerTransaction) -> None:
        """An in-dialog request other than ACK and CANCEL, with its server transaction."""
        method = request.method
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            tx.respond(request.create_response(500, "Server Internal Error", headers=[("Retry-After", "1")]))
            return
        self.remote_seq = seq
        if method == "BYE":
            tx.respond(request.create_response(200))
            self._stop_2xx()
            try:
                self.handler.on_bye(self, request)
            except Exception:
                log.exception("on_bye failed")
            self._terminate("remote-bye")
            return
        if method in ("INVITE", "UPDATE"):
            await self._receive_offer(request, tx)
            return
        if method in ("INFO", "MESSAGE"):
            try:
                if method == "INFO":
                    status = await self.handler.on_info(self, request)
                else:
                    status = await self.handler.on_message(self, request)
            except Exception:
                log.exception("%s handler failed", method)
                status = 500
            tx.respond(request.create_response(status))
            return
        if method == "OPTIONS":
            tx.respond(request.create_response(200, headers=self.stack.capability_headers()))
            return
        tx.respond(request.create_response(501 if method not in self.stack.KNOWN_METHODS else 405))

    async def _receive_offer(self, request: SipRequest, tx: ServerTransaction) -> None:
        is_invite = request.method == "INVITE"
        if is_invite and (self._outgoing_invite or self._incoming_invite is not None):
            if self._outgoing_invite:
                tx.respond(request.create_response(491))
            else:
                tx.respond(request.create_response(500, headers=[("Retry-After", "1")]))
            return
        if is_invite:
            self._incoming_invite = tx
            tx.respond(request.create_response(100))
        try:
            try:
                answer = await self.handler.on_offer(self, request.body, request)
            except OfferPending:
                tx.respond(request.create_response(491))
                return
            except Exception:
                log.exception("on_offer failed")
                tx.respond(request.create_response(500))
                return
            if tx.final_sent:  # cancelled meanwhile
                return
            if answer is None:
                tx.respond(request.create_response(488))
                return
            self._refresh_target(request)
            response = request.create_response(
                200,
                to_tag=self.local_tag,
                headers=[
                    ("Contact", self.stack.contact_for(self.flow)),
                    ("Content-Type", "application/sdp"),
                    *self.stack.capability_headers(),
                ],
                body=answer,
            )
            tx.respond(response)
            if is_invite:
                self._start_2xx(request.cseq.seq, response.serialize(), initial=False)
        finally:
            if is_invite:
                self._incoming_invite = None

    def _refresh_target(self, message: SipRequest | SipResponse) -> None:
        contact = message.headers.get("contact")
        if not contact:
            return
        try:
            self.remote_target = Address.parse(contact.split(",")[0] if "," in contact else contact).uri
        except SipUriError:
            pass

    # -- ending ------------------------------------------------------------------------------------------------
    def _terminate(self, reason: str) -> None:
        if self.state is DialogState.TERMINATED:
            return
        self.state = DialogState.TERMINATED
        self.termination_reason = reason
        self._stop_2xx()
        self.stack._forget_dialog(self)
        self.terminated.set()
        try:
            self.handler.on_terminated(self, reason)
        except Exception:
            log.exception("on_terminated failed")
