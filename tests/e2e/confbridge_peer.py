"""A SIP/RTP peer that behaves as Asterisk's ConfBridge does toward one member, for the bridge tests.

Written apart from signaling/ (its own digest check, message building and dialog bookkeeping, with the raw helpers
of tests/e2e/sipclient.py) so that it checks the gateway rather than agreeing with it.

As the callee (the gateway's bridge calling in): it challenges a new INVITE with digest as Asterisk does
(`realm="asterisk"`, `qop="auth"`, MD5), checks the answer, answers with plain RTP (PCMU and telephone-event),
sends a tone and records what it receives; it answers in-dialog OPTIONS (keepalive) and BYE, and 481 to a request
in a dialog it does not know (as a restarted Asterisk does). `stop()` is a crash: sockets closed, nothing said.

Video, as ConfBridge in `video_mode=sfu` does toward one member, over plain RTP (RTP/AVP) with VP8 peers of
tests/sfu/rtpvideo.py: when the gateway's offer has a VP8 m=video, the answer takes it with a receive-only peer
(`PeerCall.own_video`: what the member sends to the conference, the gateway's current speaker; ConfBridge does
not send a member's video back to it). `reinvite(sources)` is ConfBridge's SFU re-INVITE: after the audio and the
member's own stream, one m=video per other video source, sendonly, each sending its colour from a peer of its own
(`PeerCall.sources`); a source that left keeps its m-line, with port 0. Other m-lines of an offer are refused.

As the caller (a phone routed in over the trunk): it places an INVITE from its address, audio only, answering a
challenge if it has credentials.
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
from tests.sfu.rtpvideo import RtpVideoPeer

REALM = "asterisk"


def _params(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="?([^",]*)"?', header.split(" ", 1)[1]))


def _uri_of(name_addr: str) -> str:
    return name_addr[name_addr.index("<") + 1 : name_addr.index(">")] if "<" in name_addr else name_addr.split(";")[0]


@dataclass
class _Section:
    """One m-line of an SDP body and its attributes (without "a=")."""

    kind: str
    port: int
    line: str
    host: str
    attributes: list[str] = field(default_factory=list)

    def payload_type(self, codec: str) -> int | None:
        for attribute in self.attributes:
            found = re.fullmatch(rf"rtpmap:(\d+) {codec}/.*", attribute, re.IGNORECASE)
            if found:
                return int(found.group(1))
        return None

    @property
    def rtp(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def rtcp(self) -> tuple[str, int]:
        """RFC 3605 `a=rtcp:PORT [IN IP4 ADDRESS]`, else the RTP port + 1."""
        for attribute in self.attributes:
            found = re.fullmatch(r"rtcp:(\d+)(?: IN IP4 (\S+))?\s*", attribute)
            if found:
                return found.group(2) or self.host, int(found.group(1))
        return self.host, self.port + 1

    @property
    def refused(self) -> str:
        return re.sub(r"^(m=\S+) \d+(/\d+)?", r"\1 0", self.line)


def _sections(sdp: str) -> list[_Section]:
    sections: list[_Section] = []
    host = "127.0.0.1"
    for line in sdp.splitlines():
        media = re.fullmatch(r"m=(\S+) (\d+)(?:/\d+)? .*", line)
        if media:
            sections.append(_Section(media.group(1), int(media.group(2)), line, host))
        elif line.startswith("c=IN IP4 ") and len(line.split()) == 3:
            if sections:
                sections[-1].host = line.split()[2].split("/")[0]
            else:
                host = line.split()[2].split("/")[0]
        elif line.startswith("a=") and sections:
            sections[-1].attributes.append(line[2:])
    return sections


def _audio_lines(port: int) -> list[str]:
    return [
        f"m=audio {port} RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=maxptime:140",
        "a=sendrecv",
    ]


def _video_lines(peer: RtpVideoPeer | None, direction: str) -> list[str]:
    """A VP8 stream as Asterisk writes it; with no peer, a stream that is gone (port 0)."""
    if peer is None:
        return ["m=video 0 RTP/AVP 96", "a=rtpmap:96 VP8/90000"]
    pt = peer.payload_type
    return [
        f"m=video {peer.port} RTP/AVP {pt}",
        f"a=rtpmap:{pt} VP8/90000",
        "a=rtcp-fb:* ccm fir",
        "a=rtcp-fb:* nack pli",
        f"a={direction}",
    ]


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
    #: the m-lines of the first offer/answer, in order: "audio", "own" (the member's video) or a refused m-line
    layout: list[str] = field(default_factory=lambda: ["audio"])
    #: the member's video as the gateway sends it to the conference (receive only); None without video
    own_video: RtpVideoPeer | None = None
    #: the other video sources of ConfBridge's SFU re-INVITEs, by position; None: gone (or refused)
    sources: list[RtpVideoPeer | None] = field(default_factory=list)

    def video_peers(self) -> list[RtpVideoPeer]:
        return [peer for peer in (self.own_video, *self.sources) if peer is not None]

    async def close_media(self) -> None:
        await self.media.close()
        for peer in self.video_peers():
            await peer.close()


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
        self.stale_requests: list[str] = []  # methods of in-dialog requests for dialogs it does not know (481)
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
            await call.close_media()
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
            # out of a dialog, OPTIONS asks whether we are up; in a dialog we do not know (a restarted Asterisk
            # asked about a call of its former life), every request gets 481
            in_dialog = ";tag=" in (request.header("To") or "")
            status = 200 if method == "OPTIONS" and not in_dialog else 481
            if in_dialog:
                self.stale_requests.append(method)
            self._respond(request, addr, status, "OK" if status == 200 else "Call/Transaction Does Not Exist")
            return
        if method == "BYE":
            call.bye_reason = request.header("Reason")
            self._respond(request, addr, 200, "OK", branch=branch)
            call.ended.set()
            await call.close_media()
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
        sections = _sections(offer)
        audio = next((section for section in sections if section.kind == "audio"), None)
        if audio is None or not audio.port or not re.match(r"m=audio \d+ RTP/AVP[ \d]* 0\b", audio.line):
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
        call.layout = []
        video: _Section | None = None
        for section in sections:
            pt = section.payload_type("VP8")
            if section is audio:
                call.layout.append("audio")
            elif section.kind == "video" and section.port and pt is not None and video is None:
                video, call.own_video = section, RtpVideoPeer(None, payload_type=pt)
                await call.own_video.open()
                call.layout.append("own")
            else:
                call.layout.append(section.refused)
        call.answer = self._sdp(call)
        self.calls[call.call_id] = call
        self.invites.append(request)
        self._respond(
            request, addr, 200, "OK", call.local_tag, self._sdp_headers(), call.answer.encode(), branch=branch
        )
        media.start(audio.rtp)
        if video is not None and call.own_video is not None:
            call.own_video.start(video.rtp, video.rtcp)
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

    def _sdp(self, call: PeerCall) -> str:
        """The call's media: its first offer/answer's m-lines, then the SFU's sources (sendonly)."""
        lines = ["v=0", f"o=- 4242 {call.sdp_version} IN IP4 127.0.0.1", "s=Asterisk", "c=IN IP4 127.0.0.1", "t=0 0"]
        for entry in call.layout:
            if entry == "audio":
                lines += _audio_lines(call.media.port)
            elif entry == "own":
                lines += _video_lines(call.own_video, "sendrecv")
            else:
                lines.append(entry)
        for source in call.sources:
            lines += _video_lines(source, "sendonly")
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

    async def reinvite(self, sources: list[str | None]) -> tuple[int, str]:
        """ConfBridge's SFU re-INVITE: the audio, the member's own video if any, then one sendonly m=video per
        entry of `sources`, a colour (a source sending it) or None (a source that left: port 0). Entry i is always
        the i-th source m-line: a colour where a source already is keeps it (and its port); positions past the
        list are offered as gone, since m-lines never go away. Returns the status and the answer; the 2xx is ACKed
        and the sources the answer took start sending to it (those it refused are closed). Streams this offer
        added are closed again when it fails."""
        call = self.current
        added: list[RtpVideoPeer] = []
        call.sources += [None] * (len(sources) - len(call.sources))
        for index, peer in enumerate(call.sources):
            colour = sources[index] if index < len(sources) else None
            if colour is None and peer is not None:
                await peer.close()
                call.sources[index] = None
            elif colour is not None and peer is None:
                call.sources[index] = peer = RtpVideoPeer(colour)
                await peer.open()
                added.append(peer)
            elif colour is not None and peer is not None:
                peer.colour = colour
        call.cseq += 1
        call.sdp_version += 1
        offer = self._sdp(call)
        headers = [*self._dialog_headers(call, "INVITE", call.cseq), *self._sdp_headers()]
        response = await self._transact(
            f"INVITE {call.remote_target} SIP/2.0", headers, self._target(call), offer.encode()
        )
        if response.status >= 300:
            for index, peer in enumerate(call.sources):
                if peer is not None and peer in added:
                    await peer.close()
                    call.sources[index] = None
            return response.status, response.body.decode()
        ack = build(
            f"ACK {call.remote_target} SIP/2.0",
            [
                ("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
                *self._dialog_headers(call, "ACK", call.cseq),
            ],
        )
        self._send(ack, self._target(call))
        answer = response.body.decode()
        await self._apply_answer(call, answer)
        if self._sdp(call) != offer:  # a stream was refused: the session's SDP changed again
            call.sdp_version += 1
        call.answer = self._sdp(call)  # what a refresh from the gateway is answered with
        return response.status, answer

    async def _apply_answer(self, call: PeerCall, answer: str) -> None:
        """Start the video streams the answer took toward it; close those it refused (port 0 or missing)."""
        sections = _sections(answer)

        def taken(index: int) -> _Section | None:
            return sections[index] if index < len(sections) and sections[index].port else None

        for index, entry in enumerate(call.layout):
            if entry == "own" and call.own_video is not None:
                section = taken(index)
                if section is not None:
                    call.own_video.start(section.rtp, section.rtcp)
                else:
                    call.layout[index] = f"m=video 0 RTP/AVP {call.own_video.payload_type}"
                    await call.own_video.close()
                    call.own_video = None
        for index, peer in enumerate(call.sources):
            section = taken(len(call.layout) + index)
            if peer is not None and section is not None:
                peer.start(section.rtp, section.rtcp)
            elif peer is not None:
                await peer.close()
                call.sources[index] = None

    async def bye(self, reason: str = 'Q.850;cause=16;text="Normal Clearing"') -> int:
        """Hang up the current call (ConfBridge kicking the member, or Asterisk shutting down)."""
        call = self.current
        call.cseq += 1
        headers = [*self._dialog_headers(call, "BYE", call.cseq), ("Reason", reason)]
        response = await self._transact(f"BYE {call.remote_target} SIP/2.0", headers, self._target(call), b"")
        call.ended.set()
        await call.close_media()
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
        audio = next((section for section in _sections(call.answer) if section.kind == "audio"), None)
        media.start(audio.rtp if audio is not None else ("127.0.0.1", 0))
        return response, call

    def _ack_failure(
        self, uri: str, base: list[tuple[str, str]], response: SipMessage, cseq: int, addr: tuple[str, int]
    ) -> None:
        headers = [("Via", response.header("Via") or "")]
        headers += [(n, v) for n, v in base if n in ("Max-Forwards", "From", "Call-ID")]
        headers += [("To", response.header("To") or ""), ("CSeq", f"{cseq} ACK")]
        self._send(build(f"ACK {uri} SIP/2.0", headers), addr)
