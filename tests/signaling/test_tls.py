"""SIP over TLS (RFC 3261 section 26.2): phones register and call over TLS, and the stack calls out over TLS (as the
bridge does to an Asterisk configured with transport tls), trusting only the certificates it is told to."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.digest import DigestCredentials
from signaling.stack import SipStack, StackConfig
from signaling.transport import TcpTransport
from tests.certificates import self_signed

from .conftest import FAST
from .raw import OFFER
from .support import CANNED_SDP, Accounts, DialPlan


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
async def tls_stack(
    accounts: Accounts, plan: DialPlan, certificate: tuple[Path, Path]
) -> AsyncIterator[tuple[SipStack, TcpTransport]]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*certificate)
    stack = SipStack(StackConfig(domain="meetings.test", timers=FAST), accounts, plan)
    await stack.start_udp("127.0.0.1", 0)
    listener = await stack.start_tls("127.0.0.1", 0, server)
    yield stack, listener
    await stack.close()


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


async def raw_exchange(port: int, context: ssl.SSLContext, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        writer.write(message)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


async def test_options_over_tls_is_answered_on_the_same_connection(
    tls_stack: tuple[SipStack, TcpTransport], certificate: tuple[Path, Path]
) -> None:
    _, listener = tls_stack
    options = (
        b"OPTIONS sip:meetings.test SIP/2.0\r\nVia: SIP/2.0/TLS client.invalid;branch=z9hG4bKtls1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@meetings.test>;tag=1\r\nTo: <sip:meetings.test>\r\n"
        b"Call-ID: tls-options\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    answer = await raw_exchange(listener.port, trusting(certificate), options)
    assert answer.startswith(b"SIP/2.0 200")
    assert b"Via: SIP/2.0/TLS client.invalid" in answer


async def test_calls_out_and_in_over_tls_with_digest(
    tls_stack: tuple[SipStack, TcpTransport], certificate: tuple[Path, Path]
) -> None:
    stack, listener = tls_stack
    caller = SipStack(StackConfig(domain="caller.test", timers=FAST, tls_client=trusting(certificate)), Accounts())
    await caller.start_udp("127.0.0.1", 0)
    try:
        uri = f"sip:*41000001@localhost:{listener.port};transport=tls"
        dialog = await caller.invite(uri, OFFER, credentials=DigestCredentials("alice", "alice-pw"))
        assert dialog.initial_response is not None and dialog.initial_response.body == CANNED_SDP
        assert dialog.flow.transport == "TLS"
        assert any(d.flow.transport == "TLS" for d in stack.dialogs.values())  # the callee's side of it
        await dialog.bye()
    finally:
        await caller.close()


async def test_a_certificate_nobody_vouches_for_is_refused(tls_stack: tuple[SipStack, TcpTransport]) -> None:
    _, listener = tls_stack
    caller = SipStack(StackConfig(domain="caller.test", timers=FAST), Accounts())  # the system's CAs only
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            await caller.invite(f"sip:x@localhost:{listener.port};transport=tls", OFFER)
    finally:
        await caller.close()
