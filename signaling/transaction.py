"""SIP transactions (RFC 3261 section 17, with the RFC 6026 "Accepted" states).

Client and server, INVITE and non-INVITE, timers A B D E F G H I J K (and L, M from RFC 6026).
Retransmissions happen over unreliable flows (UDP) only. Server transactions absorb retransmitted requests
and repeat their last response. The ACK to a non-2xx final response is the client transaction's; the ACK to a
2xx is end to end (the dialog's).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .message import BRANCH_COOKIE, Headers, SipRequest, SipResponse
from .stats import SipCounters
from .transport import Flow

__all__ = [
    "ClientTransaction",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "ServerTransaction",
    "TimerSettings",
    "TransactionLayer",
    "TransactionState",
    "new_branch",
]

log = logging.getLogger(__name__)


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1, T2, T4 (section 17.1.1.1, table 4). Tests shrink them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:  # also F, H, J, L, M
        return 64 * self.t1

    @property
    def d(self) -> float:
        return max(32.0, 64 * self.t1) if self.t1 >= 0.5 else 64 * self.t1


class TransactionState(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class _Transaction:
    # slots: thousands of finished transactions wait for Timer J; no __dict__ apiece
    __slots__ = ("_loop", "_raw", "_timers", "flow", "key", "layer", "request", "state")

    def __init__(self, layer: TransactionLayer, request: SipRequest, flow: Flow, key: tuple[str, ...]) -> None:
        self.layer = layer
        self.request = request
        self.flow = flow
        self.key = key
        self.state = TransactionState.TRYING
        self._raw: bytes | None = None  # the datagram it came in, for TransactionLayer.match_datagram
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop = asyncio.get_running_loop()

    @property
    def reliable(self) -> bool:
        return self.flow.reliable

    def _start_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._loop.call_later(delay, self._fire, name, callback)

    def _fire(self, name: str, callback: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        if self.state is TransactionState.TERMINATED:
            return
        try:
            callback()
        except Exception:
            log.exception("timer %s failed", name)

    def _cancel_timer(self, name: str) -> None:
        h = self._timers.pop(name, None)
        if h is not None:
            h.cancel()

    def terminate(self) -> None:
        if self.state is TransactionState.TERMINATED:
            return
        self.state = TransactionState.TERMINATED
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        self.layer._remove(self)

    def _terminate_later(self, delay: float) -> None:
        """Timers D, I, J, K: the end of a finished transaction, queued with the layer's (no timer of its own)."""
        if delay <= 0:
            self.terminate()
        else:
            self.layer._terminate_later(self, delay)


# -- server side --------------------------------------------------------------------------------------------
class ServerTransaction(_Transaction):
    """Sends responses for one received request; `last_response` is what retransmissions get (its bytes are
    what is kept: a finished non-INVITE transaction holds no parsed message, see `_forget_request`)."""

    __slots__ = ("_last_bytes", "_last_status", "last_response", "on_terminated", "source")

    def __init__(self, layer: TransactionLayer, request: SipRequest, flow: Flow, key: tuple[str, ...]) -> None:
        super().__init__(layer, request, flow, key)
        self.last_response: SipResponse | None = None
        self._last_bytes: bytes | None = None
        self._last_status = 0
        self.source = flow.remote_address[0]  # what the layer counts it against (`TransactionLayer.admits`)
        self.on_terminated: Callable[[ServerTransaction], None] | None = None

    @property
    def final_sent(self) -> bool:
        return self._last_status >= 200

    def _send(self, response: SipResponse) -> None:
        self.last_response = response
        self._last_status = response.status
        self.layer.counters.response_sent(self.request.method, response.status)
        self._last_bytes = response.serialize()
        self.flow.send(self._last_bytes)

    def _forget_request(self) -> None:
        """Keep only what a retransmission needs (the response bytes) while waiting for the end: the request,
        its body included, and the parsed response are the application's to keep if it wants them."""
        self.request = SipRequest(self.request.method, self.request.uri)
        self.last_response = None

    def _resend(self) -> None:
        if self._last_bytes is not None:
            self.flow.send(self._last_bytes)

    def respond(self, response: SipResponse) -> None:
        raise NotImplementedError

    def receive_request(self, request: SipRequest) -> None:
        raise NotImplementedError

    def terminate(self) -> None:
        was = self.state
        super().terminate()
        if was is not TransactionState.TERMINATED and self.on_terminated is not None:
            cb, self.on_terminated = self.on_terminated, None
            cb(self)


class NonInviteServerTransaction(ServerTransaction):
    __slots__ = ()

    def respond(self, response: SipResponse) -> None:
        st = self.state
        if st in (TransactionState.COMPLETED, TransactionState.TERMINATED):
            return
        self._send(response)
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
        elif self.reliable:
            self.state = TransactionState.COMPLETED
            self.terminate()
        else:
            self.state = TransactionState.COMPLETED
            self._forget_request()
            self._terminate_later(self.layer.timers.b)  # Timer J

    def receive_request(self, request: SipRequest) -> None:
        if self.state in (TransactionState.PROCEEDING, TransactionState.COMPLETED):
            self._resend()


class InviteServerTransaction(ServerTransaction):
    """`on_ack_timeout` is called when Timer H fires (no ACK for a non-2xx final response)."""

    __slots__ = ("_g", "on_ack", "on_ack_timeout")

    def __init__(self, layer: TransactionLayer, request: SipRequest, flow: Flow, key: tuple[str, ...]) -> None:
        super().__init__(layer, request, flow, key)
        self.state = TransactionState.PROCEEDING
        self.on_ack_timeout: Callable[[], None] | None = None
        self.on_ack: Callable[[SipRequest], None] | None = None
        self._g = layer.timers.t1

    def respond(self, response: SipResponse) -> None:
        st = self.state
        status = response.status
        if st is TransactionState.PROCEEDING:
            self._send(response)
            if status < 200:
                return
            if status < 300:
                self.state = TransactionState.ACCEPTED
                self._start_timer("L", self.layer.timers.b, self.terminate)
            else:
                self.state = TransactionState.COMPLETED
                if not self.reliable:
                    self._start_timer("G", self._g, self._timer_g)
                self._start_timer("H", self.layer.timers.b, self._timer_h)
        elif st is TransactionState.ACCEPTED and 200 <= status < 300:
            # 2xx retransmissions by the UA core (section 13.3.1.4)
            self._send(response)

    def _timer_g(self) -> None:
        if self.state is TransactionState.COMPLETED:
            self._resend()
            self._g = min(2 * self._g, self.layer.timers.t2)
            self._start_timer("G", self._g, self._timer_g)

    def _timer_h(self) -> None:
        cb = self.on_ack_timeout
        self.terminate()
        if cb is not None:
            cb()

    def receive_request(self, request: SipRequest) -> None:
        st = self.state
        if request.method == "ACK":
            if st is TransactionState.COMPLETED:
                self.state = TransactionState.CONFIRMED
                self._cancel_timer("G")
                self._cancel_timer("H")
                self._terminate_later(0 if self.reliable else self.layer.timers.t4)  # Timer I
            elif st is TransactionState.ACCEPTED and self.on_ack is not None:
                self.on_ack(request)
            return
        # retransmitted INVITE
        if st is TransactionState.PROCEEDING or st is TransactionState.COMPLETED:
            self._resend()


# -- client side --------------------------------------------------------------------------------------------
class ClientTransaction(_Transaction):
    """Sends one request; `final` resolves with the final response (408 on timeout, 503 on transport error).
    `on_provisional` sees 1xx; `on_retransmitted_2xx` sees 2xx retransmissions (INVITE only)."""

    __slots__ = ("_bytes", "_interval", "final", "on_provisional", "on_retransmitted_2xx", "provisional_received")

    def __init__(self, layer: TransactionLayer, request: SipRequest, flow: Flow) -> None:
        branch = request.via.branch or ""
        super().__init__(layer, request, flow, (branch, request.method))
        self.final: asyncio.Future[SipResponse] = self._loop.create_future()
        self.on_provisional: Callable[[SipResponse], None] | None = None
        self.on_retransmitted_2xx: Callable[[SipResponse], None] | None = None
        self.provisional_received = False
        self._bytes = request.serialize()
        self._interval = layer.timers.t1

    def start(self) -> None:
        self.layer._add_client(self)
        if not self.flow.send(self._bytes):
            self._fail(503, "Service Unavailable (transport error)")
            return
        self._started()

    def _started(self) -> None:
        raise NotImplementedError

    def _fail(self, status: int, reason: str) -> None:
        if not self.final.done():
            resp = self.request.create_response(status, reason)
            self.final.set_result(resp)
        self.terminate()

    def _deliver_final(self, response: SipResponse) -> None:
        if not self.final.done():
            self.final.set_result(response)

    def _deliver_provisional(self, response: SipResponse) -> None:
        self.provisional_received = True
        if self.on_provisional is not None:
            try:
                self.on_provisional(response)
            except Exception:
                log.exception("provisional response handler failed")

    def receive_response(self, response: SipResponse) -> None:
        raise NotImplementedError

    def terminate(self) -> None:
        super().terminate()
        if not self.final.done():
            self.final.set_result(self.request.create_response(408, "Request Timeout"))


class NonInviteClientTransaction(ClientTransaction):
    __slots__ = ()

    def _started(self) -> None:
        self.state = TransactionState.TRYING
        if not self.reliable:
            self._start_timer("E", self._interval, self._timer_e)
        self._start_timer("F", self.layer.timers.b, lambda: self._fail(408, "Request Timeout"))

    def _timer_e(self) -> None:
        if self.state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            self.flow.send(self._bytes)
            if self.state is TransactionState.PROCEEDING:
                self._interval = self.layer.timers.t2
            else:
                self._interval = min(2 * self._interval, self.layer.timers.t2)
            self._start_timer("E", self._interval, self._timer_e)

    def receive_response(self, response: SipResponse) -> None:
        st = self.state
        if st not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            self._deliver_provisional(response)
            return
        self.state = TransactionState.COMPLETED
        self._cancel_timer("E")
        self._cancel_timer("F")
        self._deliver_final(response)
        self._terminate_later(0 if self.reliable else self.layer.timers.t4)  # Timer K


class InviteClientTransaction(ClientTransaction):
    __slots__ = ("_ack",)

    def __init__(self, layer: TransactionLayer, request: SipRequest, flow: Flow) -> None:
        super().__init__(layer, request, flow)
        self._ack: bytes | None = None

    def _started(self) -> None:
        self.state = TransactionState.CALLING
        if not self.reliable:
            self._start_timer("A", self._interval, self._timer_a)
        self._start_timer("B", self.layer.timers.b, lambda: self._fail(408, "Request Timeout"))

    def _timer_a(self) -> None:
        if self.state is TransactionState.CALLING:
            self.flow.send(self._bytes)
            self._interval *= 2
            self._start_timer("A", self._interval, self._timer_a)

    def build_ack(self, response: SipResponse) -> SipRequest:
        """The ACK for a non-2xx final response (section 17.1.1.3)."""
        req = self.request
        h = Headers()
        h.add("Via", req.headers.values("via")[0])
        for name in ("route",):
            for v in req.headers.get_all(name):
                h.add("Route", v)
        h.add("Max-Forwards", "70")
        h.add("From", req.headers.get("from") or "")
        h.add("To", response.headers.get("to") or "")
        h.add("Call-ID", req.call_id)
        h.add("CSeq", f"{req.cseq.seq} ACK")
        return SipRequest("ACK", req.uri, h)

    def receive_response(self, response: SipResponse) -> None:
        st = self.state
        status = response.status
        if status < 200:
            if st in (TransactionState.CALLING, TransactionState.PROCEEDING):
                self.state = TransactionState.PROCEEDING
                self._cancel_timer("A")
                self._cancel_timer("B")
                self._deliver_provisional(response)
            return
        if status < 300:
            if st in (TransactionState.CALLING, TransactionState.PROCEEDING):
                self.state = TransactionState.ACCEPTED
                self._cancel_timer("A")
                self._cancel_timer("B")
                self._start_timer("M", self.layer.timers.b, self.terminate)
                self._deliver_final(response)
            elif st is TransactionState.ACCEPTED and self.on_retransmitted_2xx is not None:
                self.on_retransmitted_2xx(response)
            return
        if st in (TransactionState.CALLING, TransactionState.PROCEEDING):
            self.state = TransactionState.COMPLETED
            self._cancel_timer("A")
            self._cancel_timer("B")
            self._ack = self.build_ack(response).serialize()
            self.flow.send(self._ack)
            self._deliver_final(response)
            self._terminate_later(0 if self.reliable else self.layer.timers.d)  # Timer D
        elif st is TransactionState.COMPLETED and self._ack is not None:
            self.flow.send(self._ack)


# -- the layer ----------------------------------------------------------------------------------------------
def server_key(request: SipRequest) -> tuple[str, str, str]:
    """Section 17.2.3: branch + sent-by + method (ACK matches its INVITE); RFC 2543 fallback without cookie."""
    via = request.via
    branch = via.branch
    method = "INVITE" if request.method == "ACK" else request.method
    # the cookie alone identifies nothing (RFC 4475 badbranch): the RFC 2543 rules apply to it
    if branch and len(branch) > len(BRANCH_COOKIE) and branch.startswith(BRANCH_COOKIE):
        return (branch, via.sent_by, method)
    return (f"2543:{request.call_id}:{request.from_tag}:{request.cseq.seq}", via.sent_by, method)


class TransactionLayer:
    """Tables of live transactions and the matching rules."""

    # A retransmission is recognised by its bytes only when the datagram is at most this long: the bytes are kept
    # as the key for the transaction's life, and longer requests are rare enough to be parsed again.
    REMEMBERED_DATAGRAM_MAX = 4096
    # The last answers sent without a transaction (OPTIONS, challenges, rejections) over UDP, by transaction key:
    # a retransmitted request gets the same bytes again, as from a transaction (clients that match responses by
    # their content, like sipp, abort on a second, different challenge), and the memory is bounded whatever comes.
    REMEMBERED_ANSWERS = 4096
    REMEMBERED_ANSWER_MAX = 2048

    def __init__(self, timers: TimerSettings | None = None, max_per_source: int = 1000, max_total: int = 20000) -> None:
        self.timers = timers or TimerSettings()
        self.counters = SipCounters()
        self.client: dict[tuple[str, ...], ClientTransaction] = {}
        self.server: dict[tuple[str, ...], ServerTransaction] = {}
        # Live server transactions per source address: what one source can make the server hold is bounded.
        self.max_per_source = max_per_source
        self.max_total = max_total
        self._per_source: dict[str, int] = {}
        # Finished transactions waiting for their end (timers D, I, J, K): one FIFO per delay, so in deadline
        # order, and one loop timer per FIFO at its head. Thousands of UDP transactions linger 32 s each (Timer J);
        # a TimerHandle, context and bound methods apiece cost CPU and garbage-collector work.
        self._ending: dict[float, deque[tuple[float, _Transaction]]] = {}
        self._ending_timers: dict[float, asyncio.TimerHandle] = {}
        self._last_key: tuple[SipRequest, tuple[str, str, str]] | None = None
        self._last_created: tuple[SipRequest, ServerTransaction] | None = None
        # A UDP retransmission is the same datagram again: found by its bytes, it is absorbed without being parsed
        # (under load, clients retransmit every 500 ms and a full parse per copy feeds the overload).
        self._by_datagram: dict[bytes, ServerTransaction] = {}
        self._answers: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def match_datagram(self, data: bytes) -> ServerTransaction | None:
        """The live server transaction whose request arrived as exactly these bytes over UDP, if any."""
        return self._by_datagram.get(data)

    def _key(self, request: SipRequest) -> tuple[str, str, str]:
        last = self._last_key
        return last[1] if last is not None and last[0] is request else server_key(request)

    def recent_answer(self, request: SipRequest) -> bytes | None:
        """What was answered statelessly to this request's transaction, if it is among the last ones."""
        return self._answers.get(self._key(request))

    def remember_answer(self, request: SipRequest, data: bytes) -> None:
        if len(data) > self.REMEMBERED_ANSWER_MAX:
            return
        answers = self._answers
        answers[self._key(request)] = data
        if len(answers) > self.REMEMBERED_ANSWERS:
            answers.popitem(last=False)

    def admits(self, source: str) -> bool:
        """Whether a new server transaction from `source` (an address) stays within the caps."""
        return len(self.server) < self.max_total and self._per_source.get(source, 0) < self.max_per_source

    def remember_datagram(self, request: SipRequest, data: bytes) -> None:
        """Remember the datagram `request` was parsed from, if a server transaction was just made for it."""
        last = self._last_created
        self._last_created = None
        if last is None or last[0] is not request or len(data) > self.REMEMBERED_DATAGRAM_MAX:
            return
        tx = last[1]
        if tx.state is not TransactionState.TERMINATED:
            tx._raw = data
            self._by_datagram[data] = tx

    def _terminate_later(self, tx: _Transaction, delay: float) -> None:
        queue = self._ending.get(delay)
        if queue is None:
            queue = self._ending[delay] = deque()
        loop = tx._loop
        deadline = loop.time() + delay
        queue.append((deadline, tx))
        if delay not in self._ending_timers:
            self._ending_timers[delay] = loop.call_at(deadline, self._end_due, delay)

    def _end_due(self, delay: float) -> None:
        self._ending_timers.pop(delay, None)
        queue = self._ending.get(delay)
        if not queue:
            return
        loop = queue[0][1]._loop
        now = loop.time()
        while queue and queue[0][0] <= now:
            _, tx = queue.popleft()
            try:
                tx.terminate()  # a no-op for one already terminated
            except Exception:
                log.exception("terminating a transaction failed")
        if queue:
            self._ending_timers[delay] = loop.call_at(queue[0][0], self._end_due, delay)
        else:
            del self._ending[delay]

    def match_request(self, request: SipRequest) -> ServerTransaction | None:
        key = server_key(request)
        self._last_key = (request, key)  # create_server usually follows for the same request
        return self.server.get(key)

    def match_response(self, response: SipResponse) -> ClientTransaction | None:
        branch = response.via.branch or ""
        return self.client.get((branch, response.cseq.method))

    def create_server(self, request: SipRequest, flow: Flow) -> ServerTransaction:
        key = self._key(request)
        self._last_key = None
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(self, request, flow, key)
        else:
            tx = NonInviteServerTransaction(self, request, flow, key)
        old = self.server.get(key)
        if old is not None:  # a request reusing a live key replaces it; the old one no longer counts
            self._uncount(old)
        self.server[key] = tx
        self._per_source[tx.source] = self._per_source.get(tx.source, 0) + 1
        self._last_created = (request, tx)
        return tx

    def _uncount(self, tx: ServerTransaction) -> None:
        n = self._per_source.get(tx.source, 0) - 1
        if n > 0:
            self._per_source[tx.source] = n
        else:
            self._per_source.pop(tx.source, None)

    def create_client(self, request: SipRequest, flow: Flow) -> ClientTransaction:
        if request.method == "INVITE":
            return InviteClientTransaction(self, request, flow)
        return NonInviteClientTransaction(self, request, flow)

    def _add_client(self, tx: ClientTransaction) -> None:
        self.client[tx.key] = tx

    def _remove(self, tx: _Transaction) -> None:
        table: dict[tuple[str, ...], ServerTransaction] | dict[tuple[str, ...], ClientTransaction]
        table = self.server if isinstance(tx, ServerTransaction) else self.client
        if table.get(tx.key) is tx:
            del table[tx.key]
            if isinstance(tx, ServerTransaction):
                self._uncount(tx)
        raw = tx._raw
        if raw is not None:
            tx._raw = None
            if self._by_datagram.get(raw) is tx:
                del self._by_datagram[raw]

    def close(self) -> None:
        for tx in [*self.client.values(), *self.server.values()]:
            tx.terminate()
        for handle in self._ending_timers.values():
            handle.cancel()
        self._ending_timers.clear()
        self._ending.clear()
        self._answers.clear()
