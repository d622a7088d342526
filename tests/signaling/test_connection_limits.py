"""Connection caps and timeouts for SIP over TCP and WebSocket (issue 12, defect 4), on real sockets: slow-loris
peers are closed after the message timeout, a source past its cap is refused while another still connects, idle
connections are closed unless a registration rides on them. Sources are loopback addresses (127.0.0.x)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from signaling.connlimits import ConnectionLimits, address_block
from signaling.dialog import DialogState
from signaling.digest import DigestCredentials
from signaling.message import SipResponse, parse_message
from signaling.stack import SipStack, StackConfig
from signaling.transport import StreamFramer
from tests.waiting import until

from .conftest import FAST
from .raw import OFFER, authorization, request
from .support import Accounts, DialPlan

WS_PATH = "/api/asterisk/ws"
LIMITS = ConnectionLimits(max_connections=400, max_connections_per_source=250, message_timeout=1.0, idle_timeout=2.0)


class Server:
    def __init__(self, stack: SipStack, ws_url: str) -> None:
        self.stack = stack
        self.ws_url = ws_url

    @property
    def tcp_port(self) -> int:
        assert self.stack.tcp is not None
        return self.stack.tcp.port


async def start(accounts: Accounts, plan: DialPlan, limits: ConnectionLimits) -> tuple[Server, web.AppRunner]:
    stack = SipStack(StackConfig(domain="meetings.test", timers=FAST, connections=limits), accounts, plan)
    await stack.start_tcp("0.0.0.0", 0)
    app = web.Application()
    app.router.add_get(WS_PATH, stack.websocket.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", 0)
    await site.start()
    return Server(stack, f"http://127.0.0.1:{runner.addresses[0][1]}{WS_PATH}"), runner


@pytest.fixture
def limits() -> ConnectionLimits:
    return LIMITS


@pytest.fixture
async def server(accounts: Accounts, plan: DialPlan, limits: ConnectionLimits) -> AsyncIterator[Server]:
    handle, runner = await start(accounts, plan, limits)
    yield handle
    await handle.stack.close()
    await runner.cleanup()


class TcpPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.port = writer.get_extra_info("sockname")[1]

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1") -> TcpPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, wait: float = 5.0) -> SipResponse:
        deadline = time.monotonic() + wait
        while True:
            for item in self.framer.feed(b""):
                if item is not None:
                    message = parse_message(item, datagram=False)
                    assert isinstance(message, SipResponse)
                    return message
            data = await asyncio.wait_for(self.reader.read(65536), max(0.01, deadline - time.monotonic()))
            assert data, "connection closed"
            items = [i for i in self.framer.feed(data) if i is not None]
            if items:
                message = parse_message(items[0], datagram=False)
                assert isinstance(message, SipResponse)
                return message

    async def closed_within(self, wait: float) -> bool:
        """True once the server closed the connection (EOF or reset), False if still open after `wait`."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), wait):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


def options(port: int, call_id: str) -> bytes:
    return request("OPTIONS", "sip:meetings.test", port, call_id=call_id, transport="TCP")


def trips(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "signaling.connlimits"]


@pytest.mark.slow
async def test_slow_loris_connections_are_closed_after_the_message_timeout(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "signaling.connlimits")
    started = time.monotonic()
    peers = [await TcpPeer.connect(server.tcp_port) for _ in range(200)]
    # half start a message and never finish its headers, half send nothing at all
    for i, peer in enumerate(peers[:100]):
        await peer.send(options(peer.port, f"loris-{i}")[:60])
    # a few trickle a byte at a time, never finishing either
    trickle = [await TcpPeer.connect(server.tcp_port) for _ in range(5)]

    async def drip(peer: TcpPeer) -> None:
        data = options(peer.port, "drip")
        for byte in data[:-4]:
            try:
                await peer.send(bytes([byte]))
            except ConnectionError:
                return
            await asyncio.sleep(0.1)

    drips = [asyncio.ensure_future(drip(peer)) for peer in trickle]
    closed = await asyncio.gather(*(peer.closed_within(15) for peer in [*peers, *trickle]))
    elapsed = time.monotonic() - started
    print(f"205 slow-loris connections closed after {elapsed:.2f} s (message timeout {LIMITS.message_timeout} s)")
    assert all(closed)
    assert elapsed >= LIMITS.message_timeout * 0.9
    for task in drips:
        task.cancel()
    for peer in [*peers, *trickle]:
        peer.close()
    assert server.stack.connection_guard.total == 0
    # one line for the source, not one per connection
    assert len(trips(caplog)) == 1, trips(caplog)
    # a well-behaved peer still gets its answer
    peer = await TcpPeer.connect(server.tcp_port)
    await peer.send(options(peer.port, "fine"))
    assert (await peer.response()).status == 200
    peer.close()


async def test_websocket_that_never_sends_a_message_is_closed(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(server.ws_url, protocols=("sip",)) for _ in range(20)]
        started = time.monotonic()
        messages = await asyncio.gather(*(asyncio.wait_for(ws.receive(), 15) for ws in sockets))
        assert all(m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) for m in messages), messages
        assert time.monotonic() - started >= LIMITS.message_timeout * 0.5
        for ws in sockets:
            await ws.close()


class TestCaps:
    @pytest.fixture
    def limits(self) -> ConnectionLimits:
        return ConnectionLimits(max_connections=8, max_connections_per_source=5, message_timeout=5, idle_timeout=30)

    async def test_connections_beyond_the_per_source_cap_are_refused_while_another_source_connects(
        self, server: Server, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, "signaling.connlimits")
        flood = [await TcpPeer.connect(server.tcp_port, "127.0.0.2") for _ in range(4)]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as session:
            ws = await session.ws_connect(server.ws_url, protocols=("sip",))  # the fifth, over WebSocket
            for i, peer in enumerate(flood):
                await peer.send(options(peer.port, f"cap-{i}"))
                assert (await peer.response()).status == 200
            # the sixth from that address: closed at once over TCP, 503 before the upgrade over WebSocket
            extra = [await TcpPeer.connect(server.tcp_port, "127.0.0.2") for _ in range(10)]
            assert all(await asyncio.gather(*(peer.closed_within(5) for peer in extra)))
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(server.ws_url, protocols=("sip",))
            assert refused.value.status == 503
            # another address still connects and is answered
            other = await TcpPeer.connect(server.tcp_port, "127.0.0.3")
            await other.send(options(other.port, "other"))
            assert (await other.response()).status == 200
            # the total cap (8): two more from a third address fit, the next does not
            more = [await TcpPeer.connect(server.tcp_port, "127.0.0.4") for _ in range(3)]
            assert await more[2].closed_within(5)
            assert not await more[0].closed_within(0.3)
            lines = trips(caplog)
            assert len([line for line in lines if "127.0.0.2" in line]) == 1, lines
            assert any("127.0.0.4" in line and "in total" in line for line in lines), lines
            await ws.close()
        for peer in [*flood, *extra, other, *more]:
            peer.close()


@pytest.mark.slow
async def test_idle_connections_are_closed_unless_registered(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "signaling.connlimits")
    idle = await TcpPeer.connect(server.tcp_port)
    await idle.send(options(idle.port, "idle"))
    assert (await idle.response()).status == 200

    registered = await TcpPeer.connect(server.tcp_port)
    contact = f"<sip:alice@127.0.0.1:{registered.port};transport=tcp>"

    def register(cseq: int, extra: list[str]) -> bytes:
        return request(
            "REGISTER", "sip:meetings.test", registered.port, call_id="reg-1", cseq=cseq,
            to="<sip:alice@meetings.test>", contact=contact, extra=[*extra, "Expires: 600"], transport="TCP",
        )  # fmt: skip

    await registered.send(register(1, []))
    challenge = await registered.response()
    assert challenge.status == 401
    await registered.send(register(2, [authorization(challenge, "alice", "alice-pw", "REGISTER", "sip:meetings.test")]))
    assert (await registered.response()).status == 200
    quiet_since = time.monotonic()

    async with aiohttp.ClientSession() as session:
        ws_idle = await session.ws_connect(server.ws_url, protocols=("sip",))
        await ws_idle.send_str(options(0, "ws-idle").decode().replace("SIP/2.0/TCP", "SIP/2.0/WS"))
        answer = await ws_idle.receive(5)
        assert parse_message(answer.data.encode(), datagram=False).status == 200  # type: ignore[union-attr]

        assert await idle.closed_within(LIMITS.idle_timeout * 5)
        closing = await asyncio.wait_for(ws_idle.receive(), LIMITS.idle_timeout * 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # the registered connection outlives two idle periods, and still answers
        await asyncio.sleep(max(0.0, quiet_since + 2 * LIMITS.idle_timeout + 0.5 - time.monotonic()))
        assert not await registered.closed_within(0.1)
        await registered.send(options(registered.port, "still-here"))
        assert (await registered.response()).status == 200
        assert any("idle" in line for line in trips(caplog))
        await ws_idle.close()
    idle.close()
    registered.close()


@pytest.mark.slow
async def test_a_connection_carrying_a_dialog_stays_until_the_call_ends(server: Server) -> None:
    caller = SipStack(StackConfig(domain="caller.test", timers=FAST), Accounts())
    try:
        uri = f"sip:meeting-guest@127.0.0.1:{server.tcp_port};transport=tcp"
        dialog = await caller.invite(uri, OFFER, credentials=DigestCredentials("guest", "guest-pw"))
        guard = server.stack.connection_guard
        assert guard.count("127.0.0.1") == 1
        await asyncio.sleep(2 * LIMITS.idle_timeout + 0.5)  # two idle periods with nothing said on the connection
        assert guard.count("127.0.0.1") == 1
        await dialog.bye()
        assert dialog.state is DialogState.TERMINATED
        # the call over, nothing rides on the connection: it goes at the next idle check
        await until(lambda: guard.count("127.0.0.1") == 0, 5 * LIMITS.idle_timeout, "the idle connection closed")
    finally:
        await caller.close()


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same subscriber block, same source
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_block(host: str, source: str) -> None:
    assert address_block(host) == source
