from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from signaling.message import SipResponse, parse_message
from signaling.stack import SipStack, StackConfig
from signaling.transaction import TimerSettings

from .raw import authorization, request
from .support import Accounts, DialPlan, Meeting, User

FAST = TimerSettings(t1=0.05, t2=0.4, t4=0.5)


@pytest.fixture
def meeting() -> Meeting:
    return Meeting("6f1c1e1a-0000-4000-8000-000000000001", "tenant-a", "*41000001")


@pytest.fixture
def accounts(meeting: Meeting) -> Accounts:
    acc = Accounts()
    acc.add("guest", "guest-pw", meeting)
    acc.add("alice", "alice-pw", User("tenant-a"))
    acc.add("mallory", "mallory-pw", User("tenant-b"))
    return acc


@pytest.fixture
def plan(meeting: Meeting) -> DialPlan:
    p = DialPlan()
    p.meetings[meeting.uuid] = meeting
    return p


@pytest.fixture
async def stack(accounts: Accounts, plan: DialPlan) -> AsyncIterator[SipStack]:
    s = SipStack(StackConfig(domain="meetings.test", timers=FAST), accounts, plan)
    await s.start_udp("127.0.0.1", 0)
    await s.start_tcp("127.0.0.1", 0)
    yield s
    await s.close()


class UdpPeer:
    """A raw UDP socket to poke the stack with hand-written messages."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes | str, port: int) -> None:
        if isinstance(data, str):
            data = data.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        self.sock.sendto(data, ("127.0.0.1", port))

    async def recv(self, wait: float = 2.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), wait)

    async def response(self, wait: float = 2.0) -> SipResponse:
        msg = parse_message(await self.recv(wait))
        assert isinstance(msg, SipResponse), msg
        return msg

    async def silence(self, seconds: float) -> list[bytes]:
        got: list[bytes] = []
        try:
            while True:
                got.append(await self.recv(seconds))
        except TimeoutError:
            return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer() -> AsyncIterator[UdpPeer]:
    p = UdpPeer()
    yield p
    p.close()


async def authenticated(peer: UdpPeer, port: int, method: str, uri: str, branch: str, **fields: object) -> bytes:
    """`method` with alice's credentials, after the (stateless) challenge: a request the stack keeps state for."""
    peer.send(request(method, uri, peer.port, **fields), port)  # type: ignore[arg-type]
    challenge = await peer.response()
    assert challenge.status == 401
    extra = [authorization(challenge, "alice", "alice-pw", method, uri), *fields.pop("extra", [])]  # type: ignore[misc]
    return request(method, uri, peer.port, branch=branch, cseq=2, extra=extra, **fields)  # type: ignore[arg-type]
