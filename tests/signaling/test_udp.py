"""The UDP transport: batched reads straight from the selector, sends queued only when the kernel says wait."""

from __future__ import annotations

import asyncio
import socket

import pytest

from signaling.transport import Flow, UdpTransport


class Collect:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Flow]] = []
        self.event = asyncio.Event()

    def __call__(self, data: bytes, flow: Flow) -> None:
        self.got.append((data, flow))
        self.event.set()


async def test_a_burst_is_read_in_order_keepalives_skipped_and_answered_over_its_flow() -> None:
    sink = Collect()
    udp = await UdpTransport.start(sink, "127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    try:
        n = 3 * UdpTransport.READ_BATCH + 5  # more than one wake-up's worth
        for i in range(n):
            peer.sendto(f"msg {i}".encode(), ("127.0.0.1", udp.port))
            if i % 7 == 0:
                peer.sendto(b"\r\n\r\n", ("127.0.0.1", udp.port))  # keep-alive: not delivered
        for _ in range(200):
            if len(sink.got) >= n:
                break
            await asyncio.sleep(0.01)
        assert [d for d, _ in sink.got] == [f"msg {i}".encode() for i in range(n)]
        flow = sink.got[0][1]
        assert flow.remote_address == peer.getsockname() and flow.transport == "UDP" and not flow.reliable
        assert flow.send(b"answer") and flow.alive
        await asyncio.sleep(0.05)
        assert peer.recv(100) == b"answer"
    finally:
        peer.close()
        udp.close()
    assert not udp.open and not udp.sendto(b"x", ("127.0.0.1", 9))
    udp.close()  # twice is fine


class _FullSocket:
    """Wraps a socket whose first sends find the kernel buffer full."""

    def __init__(self, sock: socket.socket, refusals: int) -> None:
        self._sock = sock
        self.refusals = refusals

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if self.refusals:
            self.refusals -= 1
            raise BlockingIOError
        return self._sock.sendto(data, addr)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


async def test_sends_wait_in_order_when_the_kernel_buffer_is_full() -> None:
    udp = await UdpTransport.start(Collect(), "127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    real = udp._sock
    assert real is not None
    udp._sock = _FullSocket(real, refusals=2)  # type: ignore[assignment]
    try:
        to = peer.getsockname()
        assert udp.sendto(b"one", to) and udp.sendto(b"two", to) and udp.sendto(b"three", to)
        got: list[bytes] = []
        for _ in range(100):
            try:
                got.append(peer.recv(100))
            except BlockingIOError:
                if len(got) == 3:
                    break
                await asyncio.sleep(0.01)
        assert got == [b"one", b"two", b"three"] and not udp._pending
    finally:
        udp._sock = real
        peer.close()
        udp.close()


async def test_closing_from_the_receiver_stops_the_batch() -> None:
    udp: UdpTransport | None = None
    seen: list[bytes] = []

    def receiver(data: bytes, flow: Flow) -> None:
        seen.append(data)
        assert udp is not None
        udp.close()

    udp = await UdpTransport.start(receiver, "127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(5):
            peer.sendto(b"m%d" % i, ("127.0.0.1", udp.port))
        await asyncio.sleep(0.1)
        assert seen == [b"m0"] and not udp.open
    finally:
        peer.close()


async def test_bind_errors_raise_and_ipv6_works() -> None:
    first = await UdpTransport.start(Collect(), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await UdpTransport.start(Collect(), "127.0.0.1", first.port)
    finally:
        first.close()
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        v6 = await UdpTransport.start(Collect(), "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback")
    assert v6.host == "::1" and v6.port > 0
    v6.close()
