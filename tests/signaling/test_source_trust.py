"""The source-trust hook: a new INVITE from a trusted address is taken as an account without a challenge (a trunk
peer such as Asterisk); every other source, and every WebSocket flow, is challenged as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signaling.stack import SipAccount, SipStack, StackConfig

from .conftest import FAST, UdpPeer
from .raw import OFFER, request
from .support import Accounts, DialPlan, Meeting, User


class Trust:
    def __init__(self, host: str, account: SipAccount) -> None:
        self.host = host
        self.account = account
        self.asked: list[tuple[str, str]] = []

    def account_for_source(self, host: str, transport: str) -> SipAccount | None:
        self.asked.append((host, transport))
        return self.account if host == self.host else None


@pytest.fixture
async def trusted_stack(accounts: Accounts, plan: DialPlan) -> AsyncIterator[tuple[SipStack, Trust]]:
    trust = Trust("127.0.0.1", SipAccount("trunk", "", User("tenant-a")))
    s = SipStack(StackConfig(domain="meetings.test", timers=FAST), accounts, plan, source_trust=trust)
    await s.start_udp("127.0.0.1", 0)
    yield s, trust
    await s.close()


async def test_trusted_source_invite_needs_no_digest(
    trusted_stack: tuple[SipStack, Trust], peer: UdpPeer, plan: DialPlan, meeting: Meeting
) -> None:
    stack, trust = trusted_stack
    port = stack.udp.port  # type: ignore[union-attr]
    uri = f"sip:{meeting.exten}@127.0.0.1:{port}"
    contact = f"<sip:trunk@127.0.0.1:{peer.port}>"
    peer.send(request("INVITE", uri, peer.port, to=f"<{uri}>", contact=contact, body=OFFER), port)
    statuses = [(await peer.response()).status, (await peer.response()).status]
    assert statuses == [100, 200]
    assert trust.asked == [("127.0.0.1", "UDP")]
    assert plan.calls[0].account.username == "trunk"


async def test_untrusted_source_is_challenged(accounts: Accounts, plan: DialPlan, peer: UdpPeer) -> None:
    trust = Trust("10.9.9.9", SipAccount("trunk", ""))
    stack = SipStack(StackConfig(domain="meetings.test", timers=FAST), accounts, plan, source_trust=trust)
    await stack.start_udp("127.0.0.1", 0)
    try:
        port = stack.udp.port  # type: ignore[union-attr]
        uri = f"sip:meeting-guest@127.0.0.1:{port}"
        peer.send(request("INVITE", uri, peer.port, contact=f"<sip:x@127.0.0.1:{peer.port}>", body=OFFER), port)
        assert (await peer.response()).status == 401
        assert trust.asked == [("127.0.0.1", "UDP")]
        assert not plan.calls
    finally:
        await stack.close()
