"""Hand-written requests for tests that talk to the stack over raw sockets."""

from __future__ import annotations

import secrets

from signaling.digest import DigestClient, DigestCredentials
from signaling.message import SipResponse


def request(
    method: str,
    uri: str,
    port: int,
    *,
    branch: str | None = None,
    call_id: str = "call-1",
    cseq: int = 1,
    from_tag: str = "ft1",
    to: str = "<sip:meeting-guest@meetings.test>",
    to_tag: str | None = None,
    contact: str | None = None,
    body: bytes = b"",
    extra: list[str] | None = None,
    transport: str = "UDP",
) -> bytes:
    branch = branch or "z9hG4bK" + secrets.token_hex(6)
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:peer@127.0.0.1>;tag={from_tag}",
        f"To: {to}" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines += extra or []
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def authorization(challenge: SipResponse, user: str, password: str, method: str, uri: str) -> str:
    value = DigestClient(DigestCredentials(user, password)).authorization(
        challenge.headers.get_all("www-authenticate")[0], method, uri
    )
    assert value is not None
    return f"Authorization: {value}"


OFFER = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
