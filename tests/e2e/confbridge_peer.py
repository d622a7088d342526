"""A SIP/RTP peer that behaves as Asterisk's ConfBridge does toward one member, for the bridge tests.

Written apart from signaling/ (its own digest check, message building and dialog bookkeeping, with the raw helpers
of tests/e2e/sipclient.py) so that it checks the gateway rather than agreeing with it.

As the callee (the gateway's bridge calling in): it challenges a new INVITE with digest as Asterisk does
(`realm="asterisk"`, `qop="auth"`, MD5), checks the answer, answers with plain RTP (PCMU and telephone-event),
sends a tone and records what it receives; it answers in-dialog OPTIONS (keepalive) and BYE, and sends the
re-INVITEs ConfBridge sends in `video_mode=sfu` when a video source joins (an m=video added) or leaves (that
m-line's port set to 0). As the caller (a phone routed in over the trunk): it places an INVITE from its address,
answering a challenge if it has credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from tests.e2e.sipclient import SipMessage, build, digest_authorization, md5_challenge, parse
from tests.sfu.clients import RtpPhone

REALM = "asterisk"


def _params(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="?([^",]*)"?', header.split(" ", 1)[1]))


def _uri_of(name_addr: str) -> str:
    return name_addr[name_addr.index("<") + 1 : name_addr.index(">")] if "<" in name_addr else name_addr.split(";")[0]


def _media_port(sdp: str, kind: str) -> int | None:
    for line in sdp.splitlines():
        if line.startswith(f"m={kind} "):
            return int(line.split()[1])
    return None


def _connection(sdp: str) -> str:
    return next(line.split()[2] for line in sdp.splitlines() if line.startswith("c=IN IP4"))


@dataclass
class PeerCall:
    """One dialog of the peer, with its media."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # our name-addr (without tag)
    remote_uri: str
    remote_target: str
    media: RtpPhone
    is_uas: bool
    request_uri: str = ""
    from_header: str = ""
    cseq: int = 100
    answer: str = ""
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    bye_reason: str | None = None
    sdp_version: int = 1
    options_seen: int = 0


class ConfBridgePeer(asyncio.DatagramProtocol):
    def __init__(
        self, username: str = "meetings-gateway", password: str = "bridge-secret", tone: float | None = 660.0
    ) -> None:
        self.username = username
        self.password = password
        self.tone = tone
        self.host = "127.0.0.1"
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: dict[str, PeerCall] = {}
        self.challenges = 0
        self.refused = 0
        self.authorizations: list[dict[str, str]] = []
        self.invites: list[SipMessage] = []  # authenticated INVITEs that started a call
        self.answered = asyncio.Event()
        self._nonces: set[str] = set()
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}
        self._final_by_branch: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- socket
    async def start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def contact(self) -> str:
        return f"<sip:asterisk@{self.host}:{self.port}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._received(parse(data), addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    async def stop(self) -> None:
        """Vanish without a word (a crashed or unplugged Asterisk): sockets closed, no BYE."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        for call in self.calls.values():
            await call.media.close()
            call.ended.set()
        for task in list(self._tasks):
            task.cancel()

    @property
    def current(self) -> PeerCall:
        live = [call for call in self.calls.values() if not call.ended.is_set()]
        assert live, "the peer has no call"
        return live[-1]

    # -- receiving
    async def _received(self, message: SipMessage, addr: tuple[str, int]) -> None:
        if message.is_response:
            if message.status < 200:
                return
            branch = re.search(r"branch=([^;,\s]+)", message.header("Via") or "")
            future = self._pending.get(branch.group(1)) if branch else None
            if future is not None and not future.done():
                future.set_result(message)
            return
        branch = re.search(r"branch=([^;,\s]+)", message.header("Via") or "")
        key = branch.group(1) if branch else ""
        if message.method != "ACK" and key in self._final_by_branch:
            self._send(self._final_by_branch[key], addr)  # a retransmission: the same final answer
            return
        await self._request(message, addr, key)

    def _respond(
        self,
        request: SipMessage,
        addr: tuple[str, int],
        status: int,
        reason: str,
        to_tag: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        branch: str = "",
    ) -> None:
        headers = [(n, v) for n, v in request.headers if n.lower() in ("via", "from", "call-id", "cseq")]
        to = request.header("To") or ""
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        headers.insert(2, ("To", to))
        headers += extra or []
        data = build(f"SIP/2.0 {status} {reason}", headers, body)
        if status >= 200 and branch:
            self._final_by_branch[branch] = data
        self._send(data, addr)

    async def _request(self, request: SipMessage, addr: tuple[str, int], branch: str) -> None:
        call = self.calls.get(request.header("Call-ID") or "")
        method = request.method
        if method == "ACK":
            if call is not None:
                call.confirmed.set()
            return
        if method == "INVITE" and call is None:
            await self._new_invite(request, addr, branch)
            return
        if call is None:
            status = 200 if method == "OPTIONS" else 481
            self._respond(request, addr, status, "OK" if status == 200 else "Call/Transaction Does Not Exist")
            return
        if method == "BYE":
            call.bye_reason = request.header("Reason")
            self._respond(request, addr, 200, "OK", branch=branch)
            call.ended.set()
            await call.media.close()
        elif method == "OPTIONS":
            call.options_seen += 1
            self._respond(request, addr, 200, "OK", branch=branch)
        elif method == "INVITE":  # a refresh from the gateway: same media
            self._respond(
                request, addr, 200, "OK", call.local_tag, self._sdp_headers(), call.answer.encode(), branch=branch
            )
        else:
            self._respond(request, addr, 200, "OK", branch=branch)

    def _sdp_headers(self) -> list[tuple[str, str]]:
        return [("Contact", self.contact), ("Content-Type", "application/sdp")]

    async def _new_invite(self, request: SipMessage, addr: tuple[str, int], branch: str) -> None:
        authorization = request.header("Authorization")
        if authorization is None:
            nonce = secrets.token_hex(16)
            self._nonces.add(nonce)
            self.challenges += 1
            challenge = (
                f'Digest realm="{REALM}",nonce="{nonce}",opaque="{secrets.token_hex(8)}",algorithm=md5,qop="auth"'
            )
            self._respond(request, addr, 401, "Unauthorized", secrets.token_hex(4), [("WWW-Authenticate", challenge)])
            return
        params = _params(authorization)
        self.authorizations.append(params)
        if not self._valid(params, "INVITE"):
            self.refused += 1
            self._respond(request, addr, 403, "Forbidden", secrets.token_hex(4), branch=branch)
            return
        offer = request.body.decode()
        port = _media_port(offer, "audio")
        if not port or not re.search(r"^m=audio \d+ RTP/AVP[ \d]* 0\b", offer, re.M):
            self._respond(request, addr, 488, "Not Acceptable Here", secrets.token_hex(4), branch=branch)
            return
        self._respond(request, addr, 100, "Trying")
        media = RtpPhone(self.tone)
        await media.open()
        contact = request.header("Contact") or ""
        call = PeerCall(
            call_id=request.header("Call-ID") or "",
            local_tag=secrets.token_hex(4),
            remote_tag=(request.header("From") or "").split("tag=")[1].split(";")[0],
            local_uri=(request.header("To") or "").split(";tag=")[0],
            remote_uri=(request.header("From") or "").split(";tag=")[0],
            remote_target=_uri_of(contact),
            media=media,
            is_uas=True,
            request_uri=request.first_line.split()[1],
            from_header=request.header("From") or "",
        )
        call.answer = self._audio_sdp(call, media.port)
        self.calls[call.call_id] = call
        self.invites.append(request)
        self._respond(
            request, addr, 200, "OK", call.local_tag, self._sdp_headers(), call.answer.encode(), branch=branch
        )
        media.start((_connection(offer), port))
        self.answered.set()

    def _valid(self, params: dict[str, str], method: str) -> bool:
        if params.get("username") != self.username or params.get("nonce") not in self._nonces:
            return False
        if params.get("qop") != "auth" or "cnonce" not in params or "nc" not in params:
            return False
        ha1 = hashlib.md5(f"{self.username}:{REALM}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{params.get('uri', '')}".encode()).hexdigest()
        expected = hashlib.md5(
            f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}".encode()
        ).hexdigest()
        return params.get("response") == expected

    def _audio_sdp(self, call: PeerCall, port: int, video: int | None = None) -> str:
        lines = [
            "v=0",
            f"o=- 4242 {call.sdp_version} IN IP4 127.0.0.1",
            "s=Asterisk",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            f"m=audio {port} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=maxptime:140",
            "a=sendrecv",
        ]
        if video is not None:
            # ConfBridge in SFU mode adds one sendonly stream per video source; a removed one keeps its m-line.
            lines += [
                f"m=video {video} RTP/AVP 96 97",
                "a=rtpmap:96 VP8/90000",
                "a=rtpmap:97 H264/90000",
                "a=fmtp:97 profile-level-id=42e01f;packetization-mode=1",
                "a=rtcp-fb:* ccm fir",
                "a=sendonly" if video else "a=inactive",
            ]
        return "\r\n".join(lines) + "\r\n"

    # -- sending in a dialog
    async def _transact(
        self, first_line: str, headers: list[tuple[str, str]], addr: tuple[str, int], body: bytes
    ) -> SipMessage:
        branch = "z9hG4bK" + secrets.token_hex(8)
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        data = build(
            first_line, [("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport"), *headers], body
        )
        try:
            for wait in (0.5, 1.0, 2.0, 4.0):  # Timer A over UDP
                self._send(data, addr)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), wait)
            raise TimeoutError(f"no answer to {first_line}")
        finally:
            self._pending.pop(branch, None)

    def _dialog_headers(self, call: PeerCall, method: str, cseq: int) -> list[tuple[str, str]]:
        return [
            ("Max-Forwards", "70"),
            ("From", f"{call.local_uri};tag={call.local_tag}"),
            ("To", f"{call.remote_uri};tag={call.remote_tag}"),
            ("Call-ID", call.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("User-Agent", "Asterisk PBX 22 (test peer)"),
        ]

    def _target(self, call: PeerCall) -> tuple[str, int]:
        host_port = call.remote_target.split("@")[-1].split(";")[0]
        host, _, port = host_port.partition(":")
        return host, int(port or 5060)

    async def reinvite(self, video: int | None) -> tuple[int, str]:
        """ConfBridge's SFU re-INVITE: `video` a port adds a video stream, 0 removes it (None: audio only).
        Returns the status and the answer; the 2xx is ACKed."""
        call = self.current
        call.cseq += 1
        call.sdp_version += 1
        offer = self._audio_sdp(call, call.media.port, video)
        headers = [*self._dialog_headers(call, "INVITE", call.cseq), *self._sdp_headers()]
        response = await self._transact(
            f"INVITE {call.remote_target} SIP/2.0", headers, self._target(call), offer.encode()
        )
        if response.status < 300:
            ack = build(
                f"ACK {call.remote_target} SIP/2.0",
                [
                    ("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
                    *self._dialog_headers(call, "ACK", call.cseq),
                ],
            )
            self._send(ack, self._target(call))
        return response.status, response.body.decode()

    async def bye(self, reason: str = 'Q.850;cause=16;text="Normal Clearing"') -> int:
        """Hang up the current call (ConfBridge kicking the member, or Asterisk shutting down)."""
        call = self.current
        call.cseq += 1
        headers = [*self._dialog_headers(call, "BYE", call.cseq), ("Reason", reason)]
        response = await self._transact(f"BYE {call.remote_target} SIP/2.0", headers, self._target(call), b"")
        call.ended.set()
        await call.media.close()
        return response.status

    # -- calling in (a phone routed to the gateway over the trunk)
    async def call(
        self,
        gateway: tuple[str, int],
        extension: str,
        caller: tuple[str, str] = ("Bob Phone", "1001"),
        credentials: tuple[str, str] | None = None,
    ) -> tuple[SipMessage, PeerCall | None]:
        """INVITE `extension` at the gateway; returns the final response and the call when answered (ACKed)."""
        media = RtpPhone(self.tone)
        await media.open()
        uri = f"sip:{extension}@{gateway[0]}:{gateway[1]}"
        tag = secrets.token_hex(4)
        call_id = secrets.token_hex(10)
        local_uri = f'"{caller[0]}" <sip:{caller[1]}@{self.host}>'
        base = [
            ("Max-Forwards", "70"),
            ("From", f"{local_uri};tag={tag}"),
            ("To", f"<{uri}>"),
            ("Call-ID", call_id),
            ("Contact", self.contact),
            ("Content-Type", "application/sdp"),
        ]
        offer = media.offer().encode()
        response = await self._transact(f"INVITE {uri} SIP/2.0", [*base, ("CSeq", "1 INVITE")], gateway, offer)
        cseq = 1
        if response.status in (401, 407) and credentials is not None:
            self._ack_failure(uri, base, response, cseq, gateway)
            cseq = 2
            auth = digest_authorization(md5_challenge(response), "INVITE", uri, *credentials, 1)
            name = "Authorization" if response.status == 401 else "Proxy-Authorization"
            response = await self._transact(
                f"INVITE {uri} SIP/2.0", [*base, ("CSeq", f"{cseq} INVITE"), (name, auth)], gateway, offer
            )
        if response.status >= 300:
            self._ack_failure(uri, base, response, cseq, gateway)
            await media.close()
            return response, None
        call = PeerCall(
            call_id=call_id,
            local_tag=tag,
            remote_tag=(response.header("To") or "").split("tag=")[1].split(";")[0],
            local_uri=local_uri,
            remote_uri=f"<{uri}>",
            remote_target=_uri_of(response.header("Contact") or uri),
            media=media,
            is_uas=False,
            cseq=cseq,
            answer=response.body.decode(),
        )
        self.calls[call_id] = call
        ack = build(
            f"ACK {call.remote_target} SIP/2.0",
            [
                ("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
                *self._dialog_headers(call, "ACK", cseq),
            ],
        )
        self._send(ack, self._target(call))
        call.confirmed.set()
        media.start((_connection(call.answer), _media_port(call.answer, "audio") or 0))
        return response, call

    def _ack_failure(
        self, uri: str, base: list[tuple[str, str]], response: SipMessage, cseq: int, addr: tuple[str, int]
    ) -> None:
        headers = [("Via", response.header("Via") or "")]
        headers += [(n, v) for n, v in base if n in ("Max-Forwards", "From", "Call-ID")]
        headers += [("To", response.header("To") or ""), ("CSeq", f"{cseq} ACK")]
        self._send(build(f"ACK {uri} SIP/2.0", headers), addr)
