"""RFC 4475 ("SIP Torture Test Messages") sections 3.1 to 3.4: every message sent to a running stack over UDP and
over TCP (real sockets on 127.0.0.1), each handled as the RFC says.

Our server is a UAS and registrar (never a proxy), and it authenticates every REGISTER and INVITE from an
untrusted source: RFC 3261 section 8.2 has a UAS authenticate before it inspects the method's headers or the body,
so a valid REGISTER or INVITE is "processed" when it is challenged (401); an OPTIONS is answered 200; an
unknown method 501. An invalid request is answered 400 (505 for another SIP version) with a reason phrase naming
what is wrong, or dropped when nothing in it can be answered. A response matching none of our transactions is
dropped (section 17.1.3); the torture responses all are such strays. `expect` is the list of statuses the
sender gets back, in order; an empty list means silence.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from signaling.stack import SipStack
from signaling.transport import StreamFramer

from . import torture_vectors as v
from .conftest import UdpPeer

CLOSED = -1  # the stream is closed by the server: it can no longer be framed


@dataclass(frozen=True)
class Case:
    name: str
    section: str
    message: bytes
    expect: list[int]  # over UDP, and over TCP unless `tcp` says otherwise
    rfc: str  # what the RFC asks of a UAS/registrar, and so what is asserted
    why: str = ""  # a part of the 400's reason phrase: it names the faulty header
    tcp: list[int] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # headers the (first) response must carry


# fmt: off
TABLE = [
    # -- 3.1.1 valid messages: processed --------------------------------------------------------------------
    Case(
        "wsinv",
        "3.1.1.1",
        v.WSINV,
        [481],
        "valid (folding, LWS, compact forms, escapes): INVITE processed; "
        "its To has a tag, a dialog this UAS does not have: 481 (RFC 3261 12.2.2)",
    ),
    Case("intmeth", "3.1.1.2", v.INTMETH, [501], "valid, unknown method: a UAS answers 501 (RFC 3261 8.2.1)"),
    Case("esc01", "3.1.1.3", v.ESC01, [401], "valid % escapes: INVITE processed"),
    Case("escnull", "3.1.1.4", v.ESCNULL, [401], "valid escaped NULs: REGISTER processed"),
    Case("esc02", "3.1.1.5", v.ESC02, [501], "RE%47IST%45R is not REGISTER: an unknown method, 501"),
    Case("lwsdisp", "3.1.1.6", v.LWSDISP, [200], "no LWS between display name and <: OPTIONS processed"),
    Case("longreq", "3.1.1.7", v.LONGREQ, [401], "long values, 34 Vias: INVITE processed"),
    Case(
        "dblreq",
        "3.1.1.8",
        v.DBLREQ,
        [401],
        "UDP: the octets after Content-Length are ignored, the REGISTER processed; on TCP they are the next "
        "message, an INVITE, processed too",
        tcp=[401, 401],
    ),
    Case("semiuri", "3.1.1.9", v.SEMIURI, [200], "; in the user part, folded Accept: OPTIONS processed"),
    Case("transports", "3.1.1.10", v.TRANSPORTS, [200], "unknown Via transports: OPTIONS processed"),
    Case(
        "mpart01",
        "3.1.1.11",
        v.MPART01,
        [405],
        "valid multipart MESSAGE: processed (out-of-dialog MESSAGE is not taken here: 405 with Allow)",
        headers={"allow": "INVITE"},
    ),
    Case("unreason", "3.1.1.12", v.UNREASON, [], "valid response, UTF-8 reason: parsed, a stray (dropped)"),
    Case("noreason", "3.1.1.13", v.NOREASON, [], "valid response, empty reason: parsed, a stray (dropped)"),
    # -- 3.1.2 invalid messages: rejected (or, where the RFC allows it, accepted liberally) ------------------
    Case("badinv01", "3.1.2.1", v.BADINV01, [400], "extraneous separators: 400", why="Via"),
    Case(
        "clerr",
        "3.1.2.2",
        v.CLERR,
        [400],
        "Content-Length larger than the message: 400 over UDP; on TCP the rest has not arrived yet (silence)",
        why="Content-Length",
        tcp=[],
    ),
    Case(
        "ncl",
        "3.1.2.3",
        v.NCL,
        [400],
        "negative Content-Length: 400 over UDP; a stream that cannot be framed is closed",
        why="Content-Length",
        tcp=[CLOSED],
    ),
    Case("scalar02", "3.1.2.4", v.SCALAR02, [400], "CSeq beyond 2**32, Max-Forwards 300: 400", why="CSeq"),
    Case("scalarlg", "3.1.2.5", v.SCALARLG, [], "response with overlarge scalars: dropped"),
    Case("quotbal", "3.1.2.6", v.QUOTBAL, [400], "unterminated quoted display name: 400", why="To"),
    Case("ltgtruri", "3.1.2.7", v.LTGTRURI, [400], "<> around the Request-URI: 400", why="Request-URI"),
    Case("lwsruri", "3.1.2.8", v.LWSRURI, [400], "LWS inside the Request-URI: 400", why="Request-Line"),
    Case(
        "lwsstart",
        "3.1.2.9",
        v.LWSSTART,
        [400],
        "several SP in the Request-Line: 400 (the strict choice the RFC allows)",
        why="Request-Line",
    ),
    Case(
        "trws",
        "3.1.2.10",
        v.TRWS,
        [400],
        "SP after the version: 400 (the strict choice the RFC allows)",
        why="Request-Line",
    ),
    Case(
        "escruri",
        "3.1.2.11",
        v.ESCRURI,
        [401],
        "escaped headers in the Request-URI: the liberal choice the "
        "RFC allows (they are not acted on): INVITE processed",
    ),
    Case(
        "baddate",
        "3.1.2.12",
        v.BADDATE,
        [401],
        "non-GMT Date: the liberal choice (Date is not used here): INVITE processed",
    ),
    Case(
        "regbadct",
        "3.1.2.13",
        v.REGBADCT,
        [401],
        "name-addr URI not in <>: the liberal choice, the ? part taken as the URI's: REGISTER processed",
    ),
    Case(
        "badaspec", "3.1.2.14", v.BADASPEC, [200], "spaces inside <> of To: the liberal choice, OPTIONS processed"
    ),
    Case("baddn", "3.1.2.15", v.BADDN, [400], "unquoted display name with a comma: 400", why="From"),
    Case("badvers", "3.1.2.16", v.BADVERS, [505], "SIP/7.0: 505"),
    Case("mismatch01", "3.1.2.17", v.MISMATCH01, [400], "CSeq method other than the request's: 400", why="CSeq"),
    Case(
        "mismatch02", "3.1.2.18", v.MISMATCH02, [400], "unknown method, CSeq mismatch: 400 (not 501)", why="CSeq"
    ),
    Case("bigcode", "3.1.2.19", v.BIGCODE, [], "response code beyond 699: dropped"),
    # -- 3.2 transaction layer semantics --------------------------------------------------------------------
    Case(
        "badbranch",
        "3.2.1",
        v.BADBRANCH,
        [200],
        "branch is the magic cookie alone: RFC 2543 matching, OPTIONS processed",
    ),
    # -- 3.3 application layer semantics --------------------------------------------------------------------
    Case("insuf", "3.3.1", v.INSUF, [400], "From, To, Call-ID missing: 400", why="missing From, To, Call-ID"),
    Case("unkscm", "3.3.2", v.UNKSCM, [416], "unknown Request-URI scheme: 416"),
    Case("novelsc", "3.3.3", v.NOVELSC, [416], "a scheme a UAS does not serve (soap.beep): 416"),
    Case("unksm2", "3.3.4", v.UNKSM2, [401], "unknown schemes in To, From, Contact: parsed, REGISTER processed"),
    Case(
        "bext01",
        "3.3.5",
        v.BEXT01,
        [420],
        "unknown Require: 420 with Unsupported; a UAS ignores Proxy-Require",
        headers={"unsupported": "nothingSupportsThis, nothingSupportsThisEither"},
    ),
    Case(
        "invut",
        "3.3.6",
        v.INVUT,
        [401],
        "unknown Content-Type: 415, after authentication (8.2): the unauthenticated INVITE is challenged",
    ),
    Case("regaut01", "3.3.7", v.REGAUT01, [401], "unknown Authorization scheme: treated as none, challenged"),
    Case("multi01", "3.3.8", v.MULTI01, [400], "two To, From, Call-ID, CSeq: 400", why="more than one"),
    Case(
        "mcl01",
        "3.3.9",
        v.MCL01,
        [400],
        "two Content-Lengths: 400 (on TCP the first frames the message, still two: 400; the rest is no message)",
        why="Content-Length",
    ),
    Case("bcast", "3.3.10", v.BCAST, [], "200 with a broadcast Via: a stray response, dropped, nothing sent on"),
    Case("zeromf", "3.3.11", v.ZEROMF, [200], "Max-Forwards 0 at the UAS it is for: OPTIONS processed"),
    Case("cparam01", "3.3.12", v.CPARAM01, [401], "Contact parameter after an addr-spec: REGISTER processed"),
    Case("cparam02", "3.3.13", v.CPARAM02, [401], "URI parameter inside <>: REGISTER processed"),
    Case("regescrt", "3.3.14", v.REGESCRT, [401], "escaped header in the Contact URI: REGISTER processed"),
    Case("sdp01", "3.3.15", v.SDP01, [401], "Accept without SDP: 406, after authentication (8.2): challenged"),
    # -- 3.4 backward compatibility -------------------------------------------------------------------------
    Case(
        "inv2543",
        "3.4.1",
        v.INV2543,
        [401],
        "RFC 2543 INVITE (no branch, tag, Max-Forwards, Content-Length): processed; on TCP the body, without "
        "Content-Length, is not part of the message (RFC 3261 18.3)",
    ),
]
# fmt: on


@dataclass(frozen=True)
class Reply:
    """A response read leniently: a 400 copies the request's faulty From/To/CSeq back, so it may not parse."""

    status: int
    reason: str
    headers: dict[str, str]

    @classmethod
    def read(cls, data: bytes) -> Reply:
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
        version, status, reason = head[0].split(" ", 2)
        assert version == "SIP/2.0", head[0]
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        return cls(int(status), reason, headers)


async def udp_exchange(stack: SipStack, peer: UdpPeer, message: bytes, count: int) -> list[Reply]:
    assert stack.udp is not None
    peer.send(message, stack.udp.port)
    got = [Reply.read(await peer.recv(2.0)) for _ in range(count)]
    return got + [Reply.read(data) for data in await peer.silence(0.2)]  # nothing more may come


async def tcp_exchange(stack: SipStack, message: bytes, count: int) -> list[Reply | int]:
    assert stack.tcp is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.tcp.port)
    writer.write(message)
    framer = StreamFramer()
    got: list[Reply | int] = []
    try:
        while True:
            wait = 2.0 if len(got) < count else 0.2
            try:
                data = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                return got
            if not data:
                return [*got, CLOSED]
            for frame in framer.feed(data):
                if frame is not None:
                    got.append(Reply.read(frame))
    finally:
        writer.close()


def check(case: Case, got: list[Reply | int], expect: list[int], caplog: pytest.LogCaptureFixture) -> None:
    statuses = [r if isinstance(r, int) else r.status for r in got]
    assert statuses == expect, f"{case.name} ({case.section}): {case.rfc}"
    responses = [r for r in got if isinstance(r, Reply)]
    if case.why and responses:
        assert case.why in responses[0].reason, responses[0].reason
    for name, value in case.headers.items():
        assert value in responses[0].headers.get(name, ""), name
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == [], [r.getMessage() for r in problems]


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
async def test_torture_over_udp(case: Case, stack: SipStack, peer: UdpPeer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    got = await udp_exchange(stack, peer, case.message, len(case.expect))
    check(case, list(got), case.expect, caplog)


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
async def test_torture_over_tcp(case: Case, stack: SipStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    expect = case.tcp if case.tcp is not None else case.expect
    got = await tcp_exchange(stack, case.message, len([s for s in expect if s != CLOSED]))
    check(case, got, expect, caplog)


def test_table_covers_every_message() -> None:
    names = {c.name for c in TABLE}
    assert len(names) == len(TABLE) == 49
    assert {n.lower() for n in dir(v) if n.isupper() and n[0] != "_" and n != "SDP_150"} == names
