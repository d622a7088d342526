"""SIP transports (RFC 3261 section 18): UDP and TCP. See `websocket.py` for RFC 7118.

A transport moves bytes and frames messages; it knows nothing of what they mean. Every received message is
handed to a `Receiver` with the `Flow` it came on (the way back to that peer). Nothing raises out of a transport:
a failing receiver is logged, a stream that cannot be framed any more is closed.

Keep-alives (RFC 5626 section 3.5.1): a CRLFCRLF ping on a stream is answered with a CRLF pong.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from .message import DEFAULT_LIMITS, ParserLimits, content_length_of

if TYPE_CHECKING:
    from .connlimits import ConnectionGuard

__all__ = ["Flow", "FramingError", "Receiver", "StreamFramer", "TcpTransport", "UdpTransport"]

log = logging.getLogger(__name__)

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
PING = b"\r\n\r\n"
PONG = b"\r\n"


class Receiver(Protocol):
    def __call__(self, data: bytes, flow: Flow) -> None: ...


class Flow:
    """The way to one peer over one transport: where responses and in-dialog requests go back.

    `transport` is the Via transport name (UDP, TCP, WS, WSS); `reliable` is False for UDP only.
    Stream and WebSocket flows are connections: they die, and say so to their close callbacks.
    """

    __slots__ = ("_close_callbacks", "local_address", "remote_address")

    transport = "UDP"
    reliable = False

    def __init__(self, local_address: tuple[str, int], remote_address: tuple[str, int]) -> None:
        self.local_address = local_address
        self.remote_address = remote_address
        self._close_callbacks: list[Callable[[Flow], None]] | None = None

    def send(self, data: bytes) -> bool:
        """Queue bytes to the peer. False if the flow is gone (never raises)."""
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return True

    @property
    def is_connection(self) -> bool:
        return self.reliable

    def add_close_callback(self, callback: Callable[[Flow], None]) -> None:
        if self._close_callbacks is None:
            self._close_callbacks = []
        if callback not in self._close_callbacks:
            self._close_callbacks.append(callback)

    def remove_close_callback(self, callback: Callable[[Flow], None]) -> None:
        if self._close_callbacks and callback in self._close_callbacks:
            self._close_callbacks.remove(callback)

    def _closed(self) -> None:
        callbacks, self._close_callbacks = self._close_callbacks, None
        for cb in callbacks or ():
            try:
                cb(self)
            except Exception:
                log.exception("flow close callback failed")

    def close(self) -> None:
        """Close a connection (no-op for UDP)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.transport} {self.remote_address[0]}:{self.remote_address[1]}>"


def _safe_deliver(receiver: Receiver, data: bytes, flow: Flow) -> None:
    try:
        receiver(data, flow)
    except Exception:
        log.exception("SIP receiver failed on a message from %s", flow)


# -- UDP --------------------------------------------------------------------------------------------------------
class UdpFlow(Flow):
    __slots__ = ("_udp",)
    transport = "UDP"
    reliable = False

    def __init__(self, udp: UdpTransport, remote_address: tuple[str, int]) -> None:
        super().__init__(udp.local_address, remote_address)
        self._udp = udp

    def send(self, data: bytes) -> bool:
        return self._udp.sendto(data, self.remote_address)

    @property
    def alive(self) -> bool:
        return self._udp.open

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UdpFlow) and other._udp is self._udp and other.remote_address == self.remote_address

    def __hash__(self) -> int:
        return hash((id(self._udp), self.remote_address))


class UdpTransport(asyncio.DatagramProtocol):
    """A UDP socket; one datagram is one message (or a keep-alive).

    The socket is read straight from the event loop's selector, up to `READ_BATCH` datagrams per wake-up, and
    written with `sendto` (queued only when the kernel buffer is full). asyncio's datagram transport reads one
    datagram per loop iteration, so under load every datagram paid an iteration and an epoll call: measured
    here, a bare echo costs 86-96 us of CPU per datagram that way against 43-64 us batched (3,000/s), and
    15-16 us against 8-9 us at saturation.
    """

    READ_BATCH = 16  # datagrams handled per wake-up before other callbacks get their turn

    def __init__(self, receiver: Receiver, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._receiver = receiver
        self._limits = limits
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[tuple[bytes, tuple[str, int]]] = deque()  # sends the kernel refused for now
        self.local_address: tuple[str, int] = ("0.0.0.0", 0)
        self.open = False

    @classmethod
    async def start(
        cls, receiver: Receiver, host: str = "0.0.0.0", port: int = 5060, limits: ParserLimits = DEFAULT_LIMITS
    ) -> UdpTransport:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        error: OSError | None = None
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                sock.bind(address)
            except OSError as e:
                sock.close()
                error = e
                continue
            self = cls(receiver, limits)
            self._attach(loop, sock)
            return self
        raise error or OSError(f"cannot bind UDP {host}:{port}")

    def _attach(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        try:  # bursts of requests must wait in the kernel, not be dropped (they would cost retransmissions)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        except OSError:
            pass
        self._sock = sock
        self._loop = loop
        name = sock.getsockname()
        self.local_address = (str(name[0]), int(name[1]))
        self.open = True
        loop.add_reader(sock.fileno(), self._read_ready)

    @property
    def host(self) -> str:
        return self.local_address[0]

    @property
    def port(self) -> int:
        return self.local_address[1]

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        for _ in range(self.READ_BATCH):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. an ICMP port unreachable for something we sent
                self.error_received(e)
                continue
            self.datagram_received(data, addr)
            if self._sock is not sock:
                return  # closed by what the datagram did

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(data) <= 4 and not data.strip(b"\r\n"):
            return  # keep-alive
        _safe_deliver(self._receiver, data, UdpFlow(self, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False

    def flow_to(self, host: str, port: int) -> UdpFlow:
        return UdpFlow(self, (host, port))

    def sendto(self, data: bytes, addr: tuple[str, int]) -> bool:
        sock = self._sock
        if sock is None or not self.open:
            return False
        if self._pending:
            self._pending.append((data, addr))
            return True
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._pending.append((data, addr))
            if self._loop is not None:
                self._loop.add_writer(sock.fileno(), self._write_ready)
        except Exception as e:  # e.g. unresolvable or unreachable address
            log.debug("UDP send to %s failed: %s", addr, e)
            return False
        return True

    def _write_ready(self) -> None:
        sock = self._sock
        pending = self._pending
        while pending and sock is not None:
            data, addr = pending[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except Exception as e:
                log.debug("UDP send to %s failed: %s", addr, e)
            pending.popleft()
        if sock is not None and self._loop is not None:
            self._loop.remove_writer(sock.fileno())

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self.open = False
        self._pending.clear()
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())
            sock.close()


# -- stream framing -----------------------------------------------------------------------------------------------
class FramingError(Exception):
    """The stream cannot be framed any more (bad or missing Content-Length, oversize): close it."""


class StreamFramer:
    """Cuts a byte stream into SIP messages by Content-Length (section 18.3). `None` items are keep-alive pings."""

    __slots__ = ("_buf", "_limits", "_scan")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buf = bytearray()
        self._limits = limits
        self._scan = 0

    @property
    def buffered(self) -> bool:
        """Whether bytes of an unfinished message (or keep-alive) wait for more."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[bytes | None]:
        buf = self._buf
        buf += data
        out: list[bytes | None] = []
        while buf:
            if buf[0] == 13 or buf[0] == 10:
                if buf.startswith(PING):
                    out.append(None)
                    del buf[:4]
                    self._scan = 0
                    continue
                if len(buf) < 4 and PING.startswith(bytes(buf)):
                    break  # could be the start of a ping, or a pong
                # a pong or stray line ends: drop leading CR/LF
                i = 0
                while i < len(buf) and buf[i] in (13, 10):
                    i += 1
                del buf[:i]
                self._scan = 0
                continue
            idx = buf.find(b"\r\n\r\n", max(0, self._scan - 3))
            if idx < 0:
                if len(buf) > self._limits.max_head:
                    raise FramingError("header section too large")
                self._scan = len(buf)
                break
            cl = content_length_of(bytes(buf[:idx]))
            if cl is None:
                cl = 0
            elif cl < 0:
                raise FramingError("bad Content-Length")
            if cl > self._limits.max_body:
                raise FramingError("body too large")
            total = idx + 4 + cl
            if len(buf) < total:
                self._scan = idx
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scan = 0
        return out


# -- TCP --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsContexts:
    """SIP over TLS: the context connections to us are served with (our certificate), and the one we connect to
    others with (which certificates we trust)."""

    server: ssl.SSLContext | None
    client: ssl.SSLContext


class TcpConnection(asyncio.Protocol, Flow):
    """One stream connection, plain TCP or TLS (the transport's `name`: what Via and Contact say)."""

    reliable = True

    def __init__(self, owner: TcpTransport, accepted: bool = False) -> None:
        Flow.__init__(self, ("0.0.0.0", 0), ("0.0.0.0", 0))
        self.transport = owner.name
        self._owner = owner
        self._framer = StreamFramer(owner.limits)
        self._tr: asyncio.Transport | None = None
        self._open = False
        # a connection a peer opened to us is admitted and watched by the guard; ours to others are not
        self._guard = owner.guard if accepted else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tr = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote_address = (str(peer[0]), int(peer[1]))
        self.local_address = (str(sock[0]), int(sock[1]))
        guard = self._guard
        if guard is not None and not guard.admit(self.remote_address[0]):
            self._guard = None
            self._tr.abort()
            return
        self._open = True
        self._owner._register(self)
        if guard is not None:
            guard.watch(self, self.remote_address[0])

    def data_received(self, data: bytes) -> None:
        if not self._open:
            return
        try:
            items = self._framer.feed(data)
        except FramingError as e:
            log.info("closing TCP connection from %s: %s", self.remote_address, e)
            self.close()
            return
        guard = self._guard
        for item in items:
            if item is None:
                self.send(PONG)
            else:
                if guard is not None:
                    guard.message(self)
                _safe_deliver(self._owner.receiver, item, self)
        if guard is not None:
            guard.partial(self, self._framer.buffered)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._guard is not None:
            self._guard.forget(self)
        if not self._open:
            return  # refused at once: never registered
        self._open = False
        self._owner._unregister(self)
        self._closed()

    def send(self, data: bytes) -> bool:
        if not self._open or self._tr is None or self._tr.is_closing():
            return False
        self._tr.write(data)
        return True

    @property
    def alive(self) -> bool:
        return self._open

    def close(self) -> None:
        if self._tr is not None:
            self._tr.close()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class TcpTransport:
    """A TCP listener plus the connections made to and from it, reused per remote address. Connections peers
    open are admitted and timed out by the `guard` (see `connlimits.py`) when there is one. With a `tls` pair of
    contexts it is SIP over TLS (RFC 3261 section 26.2): the same framing inside TLS, named "TLS" in Via."""

    def __init__(
        self,
        receiver: Receiver,
        limits: ParserLimits = DEFAULT_LIMITS,
        guard: ConnectionGuard | None = None,
        tls: TlsContexts | None = None,
    ) -> None:
        self.receiver = receiver
        self.limits = limits
        self.guard = guard
        self.tls = tls
        self.name = "TLS" if tls is not None else "TCP"
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], TcpConnection] = {}
        self.local_address: tuple[str, int] = ("0.0.0.0", 0)

    @classmethod
    async def start(
        cls,
        receiver: Receiver,
        host: str = "0.0.0.0",
        port: int = 5060,
        limits: ParserLimits = DEFAULT_LIMITS,
        guard: ConnectionGuard | None = None,
        tls: TlsContexts | None = None,
    ) -> TcpTransport:
        self = cls(receiver, limits, guard, tls)
        loop = asyncio.get_running_loop()
        if tls is None:
            self._server = await loop.create_server(lambda: TcpConnection(self, accepted=True), host, port)
        elif tls.server is not None:
            self._server = await loop.create_server(
                lambda: TcpConnection(self, accepted=True), host, port, ssl=tls.server, ssl_handshake_timeout=10.0
            )
        else:
            return self  # TLS only for connections we make: nothing to listen on
        sock = self._server.sockets[0].getsockname()
        self.local_address = (sock[0], sock[1])
        return self

    @property
    def host(self) -> str:
        return self.local_address[0]

    @property
    def port(self) -> int:
        return self.local_address[1]

    def _register(self, conn: TcpConnection) -> None:
        self._connections[conn.remote_address] = conn

    def _unregister(self, conn: TcpConnection) -> None:
        if self._connections.get(conn.remote_address) is conn:
            del self._connections[conn.remote_address]

    async def connect(self, host: str, port: int, server_name: str | None = None) -> TcpConnection:
        """An open connection to host:port, reusing one if there is. Over TLS the peer's certificate is checked
        against `server_name` (the URI's host) as the client context says."""
        for conn in self._connections.values():
            if conn.remote_address == (host, port) and conn.alive:
                return conn
        loop = asyncio.get_running_loop()
        if self.tls is None:
            _, conn = await loop.create_connection(lambda: TcpConnection(self), host, port)
        else:
            _, conn = await loop.create_connection(
                lambda: TcpConnection(self), host, port, ssl=self.tls.client, server_hostname=server_name or host
            )
        return conn

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
