"""A small SIP user agent for end-to-end tests, written apart from signaling/ so that it checks it rather than
agreeing with it: its own message building, parsing and digest (RFC 7616, MD5, qop=auth).

It speaks over a WebSocket (as sip.js does: `*.invalid` Via and Contact) or over UDP (as a phone does).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0")

    @property
    def status(self) -> int:
        return int(self.first_line.split()[1])

    @property
    def method(self) -> str:
        return self.first_line.split()[0]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = (self.header("CSeq") or "0 X").split()
        return int(number), method


def parse(data: bytes) -> SipMessage:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return SipMessage(lines[0], headers, body)


def build(first_line: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    text = first_line + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return text.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def digest_authorization(challenge: str, method: str, uri: str, username: str, password: str, nc: int) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    realm, nonce = params["realm"], params["nonce"]
    cnonce = secrets.token_hex(8)
    ha1 = hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    count = f"{nc:08x}"
    response = hashlib.md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{response}", '
        f'algorithm=MD5, qop=auth, nc={count}, cnonce="{cnonce}"{opaque}'
    )


def md5_challenge(response: SipMessage) -> str:
    challenges = response.all("WWW-Authenticate") + response.all("Proxy-Authenticate")
    for challenge in challenges:
        if "MD5" in challenge.upper() and "SHA-256" not in challenge.upper():
            return challenge
    assert challenges, f"no challenge in {response.first_line}"
    return challenges[0]


class CallRefused(Exception):
    def __init__(self, response: SipMessage) -> None:
        super().__init__(f"{response.first_line} (Reason: {response.header('Reason')})")
        self.response = response


@dataclass
class Call:
    call_id: str
    local_tag: str
    remote_tag: str = ""
    remote_target: str = ""
    remote_uri: str = ""
    route: list[str] = field(default_factory=list)
    cseq: int = 1
    answer: bytes = b""
    messages: list[dict[str, Any]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    bye_reason: str | None = None
    reinvites: int = 0
    infos: list[SipMessage] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    #: re-INVITEs without SDP (we offered in the 200 OK, the answer came in the ACK)
    reoffers: int = 0


Answerer = Callable[[bytes], Awaitable[bytes]]
Offerer = Callable[[], Awaitable[bytes]]


class SipClient:
    def __init__(self, username: str, password: str, domain: str) -> None:
        self.username = username
        self.password = password
        self.domain = domain
        self.host = f"{secrets.token_hex(4)}.invalid"
        self.transport = "WS"
        self.calls: dict[str, Call] = {}
        self.on_offer: Answerer | None = None
        #: a re-INVITE without SDP: our offer for the 200 OK, and what takes the answer that comes in the ACK
        self.on_reoffer: Offerer | None = None
        self.on_answer: Callable[[bytes], Awaitable[None]] | None = None
        #: how in-dialog MESSAGEs are answered (baresip answers them 415), and how many came
        self.message_status = 200
        self.messages_received = 0
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}
        self._nc = 0
        self._send: Callable[[bytes], Awaitable[None]]
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- transports
    async def connect_ws(self, session: aiohttp.ClientSession, url: str) -> None:
        socket = await session.ws_connect(url, protocols=("sip",))
        assert socket.protocol == "sip"

        async def send(data: bytes) -> None:
            await socket.send_str(data.decode())

        async def read() -> None:
            async for message in socket:
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    data = message.data.encode() if isinstance(message.data, str) else message.data
                    await self._received(parse(data))

        self._send = send
        self._reader = asyncio.create_task(read())
        self._closers.append(socket.close)

    async def connect_udp(self, server: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        client = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                task = loop.create_task(client._received(parse(data)))
                client._tasks.add(task)
                task.add_done_callback(client._tasks.discard)

        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0), remote_addr=server)
        port = transport.get_extra_info("sockname")[1]
        self.host = f"127.0.0.1:{port}"
        self.transport = "UDP"

        async def send(data: bytes) -> None:
            transport.sendto(data)

        async def close() -> None:
            transport.close()

        self._send = send
        self._closers.append(close)

    async def close(self) -> None:
        for close in self._closers:
            await close()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    # -- plumbing
    @property
    def contact(self) -> str:
        transport = ";transport=ws" if self.transport == "WS" else ""
        return f"<sip:{self.username}@{self.host}{transport}>"

    def via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {self.host};branch={branch};rport"

    async def _transact(self, first_line: str, headers: list[tuple[str, str]], body: bytes = b"") -> SipMessage:
        branch = "z9hG4bK" + secrets.token_hex(8)
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        await self._send(build(first_line, [("Via", self.via(branch)), *headers], body))
        try:
            return await asyncio.wait_for(future, 10)
        finally:
            self._pending.pop(branch, None)

    async def _received(self, message: SipMessage) -> None:
        if message.is_response:
            branch = re.search(r"branch=([^;,\s]+)", message.header("Via") or "")
            if message.status < 200:
                return
            if branch and branch.group(1) in self._pending and not self._pending[branch.group(1)].done():
                self._pending[branch.group(1)].set_result(message)
            return
        await self._request(message)

    async def _respond(self, request: SipMessage, status: int, reason: str, body: bytes = b"", extra=()) -> None:  # type: ignore[no-untyped-def]
        headers = [
            (name, value) for name, value in request.headers if name.lower() in ("via", "from", "call-id", "cseq")
        ]
        to = request.header("To") or ""
        call = self.calls.get(request.header("Call-ID") or "")
        if call and ";tag=" not in to:
            to += f";tag={call.local_tag}"
        headers.insert(2, ("To", to))
        headers.extend(extra)
        await self._send(build(f"SIP/2.0 {status} {reason}", headers, body))

    async def _request(self, request: SipMessage) -> None:
        call = self.calls.get(request.header("Call-ID") or "")
        method = request.method
        if method == "ACK":
            if call is not None and request.body:
                assert self.on_answer is not None, "an ACK brought an answer and nothing takes it"
                await self.on_answer(request.body)
            return
        if call is None:
            if method == "OPTIONS":
                await self._respond(request, 200, "OK")
            else:
                await self._respond(request, 481, "Call/Transaction Does Not Exist")
            return
        if method == "INVITE":
            call.reinvites += 1
            if request.body:
                assert self.on_offer is not None, "a re-INVITE came and nothing answers offers"
                answer = await self.on_offer(request.body)
            else:
                assert self.on_reoffer is not None, "a re-INVITE without SDP came and nothing makes offers"
                call.reoffers += 1
                answer = await self.on_reoffer()
            await self._respond(
                request, 200, "OK", answer, [("Contact", self.contact), ("Content-Type", "application/sdp")]
            )
        elif method == "MESSAGE":
            if (request.header("Content-Type") or "").startswith("text/plain"):
                call.texts.append(request.body.decode())  # text, as a phone shows it (message_status is for JSON)
                await self._respond(request, 200, "OK")
                return
            self.messages_received += 1
            if self.message_status != 200:
                await self._respond(request, self.message_status, "Refused")
                return
            call.messages.append(json.loads(request.body))
            await self._respond(request, 200, "OK")
        elif method == "BYE":
            call.bye_reason = request.header("Reason")
            await self._respond(request, 200, "OK")
            call.ended.set()
        elif method == "INFO":
            call.infos.append(request)
            await self._respond(request, 200, "OK")
        else:
            await self._respond(request, 200, "OK")

    def _authorize(self, response: SipMessage, method: str, uri: str) -> tuple[str, str]:
        self._nc += 1
        name = "Authorization" if response.status == 401 else "Proxy-Authorization"
        return name, digest_authorization(md5_challenge(response), method, uri, self.username, self.password, self._nc)

    # -- what a client does
    async def register(self, expires: int = 600, authenticate: bool = True) -> SipMessage:
        """REGISTER, answering a challenge when `authenticate` (else the challenge is returned)."""
        uri = f"sip:{self.domain}"
        call_id = secrets.token_hex(8)
        tag = secrets.token_hex(4)
        base = [
            ("Max-Forwards", "70"),
            ("To", f"<sip:{self.username}@{self.domain}>"),
            ("From", f"<sip:{self.username}@{self.domain}>;tag={tag}"),
            ("Call-ID", call_id),
            ("Contact", f"{self.contact};expires={expires}"),
            ("Expires", str(expires)),
        ]
        response = await self._transact(f"REGISTER {uri} SIP/2.0", [*base, ("CSeq", "1 REGISTER")])
        if response.status in (401, 407) and authenticate:
            auth = self._authorize(response, "REGISTER", uri)
            response = await self._transact(f"REGISTER {uri} SIP/2.0", [*base, ("CSeq", "2 REGISTER"), auth])
        return response

    async def invite(
        self,
        extension: str,
        offer: bytes,
        extra: list[tuple[str, str]] | None = None,
        on_answer: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> Call:
        """Call an extension. `on_answer` applies the 200 OK's answer before the ACK goes, as browsers do: the server
        may re-INVITE as soon as it has the ACK, and an offer arriving before the answer is applied would meet a
        peer connection still waiting for its answer."""
        uri = f"sip:{extension}@{self.domain}"
        call = Call(call_id=secrets.token_hex(10), local_tag=secrets.token_hex(4), remote_uri=uri)
        self.calls[call.call_id] = call
        base = [
            ("Max-Forwards", "70"),
            ("To", f"<{uri}>"),
            ("From", f'"{self.username}" <sip:{self.username}@{self.domain}>;tag={call.local_tag}'),
            ("Call-ID", call.call_id),
            ("Contact", self.contact),
            ("Content-Type", "application/sdp"),
            *(extra or []),
        ]
        response = await self._transact(f"INVITE {uri} SIP/2.0", [*base, ("CSeq", "1 INVITE")], offer)
        await self._ack_failure(uri, base, response, 1)
        if response.status in (401, 407):
            call.cseq = 2
            auth = self._authorize(response, "INVITE", uri)
            response = await self._transact(f"INVITE {uri} SIP/2.0", [*base, ("CSeq", "2 INVITE"), auth], offer)
            await self._ack_failure(uri, base, response, 2)
        if response.status >= 300:
            del self.calls[call.call_id]
            raise CallRefused(response)
        to = response.header("To") or ""
        call.remote_tag = to.split("tag=")[1].split(";")[0]
        contact = response.header("Contact") or ""
        call.remote_target = contact[contact.index("<") + 1 : contact.index(">")] if "<" in contact else contact
        call.route = list(reversed(response.all("Record-Route")))
        call.answer = response.body
        if on_answer is not None:
            await on_answer(response.body)
        await self._send(build(f"ACK {call.remote_target} SIP/2.0", self._dialog_headers(call, "ACK", call.cseq)))
        return call

    async def _ack_failure(self, uri: str, base: list[tuple[str, str]], response: SipMessage, cseq: int) -> None:
        """The ACK of a non-2xx final response, part of the INVITE transaction (same branch)."""
        if response.status < 300:
            return
        via = response.header("Via") or ""
        to = response.header("To") or ""
        headers = [("Via", via), *[(n, v) for n, v in base if n in ("Max-Forwards", "From", "Call-ID")]]
        headers += [("To", to), ("CSeq", f"{cseq} ACK")]
        await self._send(build(f"ACK {uri} SIP/2.0", headers))

    def _dialog_headers(self, call: Call, method: str, cseq: int) -> list[tuple[str, str]]:
        branch = "z9hG4bK" + secrets.token_hex(8)
        return [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            *[("Route", route) for route in call.route],
            ("To", f"<{call.remote_uri}>;tag={call.remote_tag}"),
            ("From", f"<sip:{self.username}@{self.domain}>;tag={call.local_tag}"),
            ("Call-ID", call.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]

    async def bye(self, call: Call) -> SipMessage:
        call.cseq += 1
        headers = [h for h in self._dialog_headers(call, "BYE", call.cseq) if h[0] != "Via"]
        response = await self._transact(f"BYE {call.remote_target} SIP/2.0", headers)
        call.ended.set()
        return response

    async def info(self, call: Call, content_type: str, body: bytes) -> SipMessage:
        return await self.in_dialog(call, "INFO", content_type, body)

    async def in_dialog(self, call: Call, method: str, content_type: str, body: bytes) -> SipMessage:
        call.cseq += 1
        headers = [h for h in self._dialog_headers(call, method, call.cseq) if h[0] != "Via"]
        headers.append(("Content-Type", content_type))
        return await self._transact(f"{method} {call.remote_target} SIP/2.0", headers, body)

    async def info_dtmf(self, call: Call, digit: str) -> SipMessage:
        return await self.info(call, "application/dtmf-relay", f"Signal={digit}\r\nDuration=160\r\n".encode())
