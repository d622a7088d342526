"""Credentials a client controls never make the server fail (issue 12, defect 2): a digest username (or any other
Authorization parameter) that is not UTF-8 or carries control characters is refused like a wrong password, with a
4xx and no Traceback, through the real account lookup on SQLite and PostgreSQL, over a real UDP socket."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import pytest

from gateway.app import SIP_STACK
from signaling.digest import DigestClient, DigestCredentials
from tests.api.sippeer import SipPeer
from tests.conftest import Api
from tests.signaling.raw import OFFER, request


@pytest.fixture
async def sip(api: Api) -> AsyncIterator[SipPeer]:
    udp = api.client.app[SIP_STACK].udp
    assert udp is not None
    peer = SipPeer("127.0.0.1", udp.port)
    yield peer
    peer.close()


def register(sip: SipPeer, authorization: bytes, call_id: str) -> bytes:
    # raw bytes: the header is not UTF-8 on purpose
    return sip.register_request("a", call_id, extra=["Authorization: @AUTH@"]).replace(b"@AUTH@", authorization)


async def fresh_nonce(sip: SipPeer) -> str:
    challenge = await sip.ask(register(sip, b'Digest username="x", realm="nowhere"', "cred-0"))
    assert challenge.status == 401
    return challenge.headers.get_all("www-authenticate")[0].split('nonce="')[1].split('"')[0]


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
    # every line can be written as UTF-8: bytes that were not text show as escapes
    for record in caplog.records:
        record.getMessage().encode("utf-8")


@pytest.mark.parametrize(
    "username",
    [b"a\xff", b"\xc3(", b"a\\\x00b", b"a\\\x07", "caf\u00e9".encode()],
    ids=["invalid-utf8", "truncated-utf8", "nul", "bell", "valid-utf8-unknown"],
)
async def test_undecodable_digest_username_is_refused_not_failed(
    api: Api, sip: SipPeer, caplog: pytest.LogCaptureFixture, username: bytes
) -> None:
    caplog.set_level(logging.INFO)
    nonce = await fresh_nonce(sip)
    authorization = (
        b'Digest username="' + username + b'", realm="meetings.local", nonce="' + nonce.encode() + b'", '
        b'uri="sip:meetings.local", response="00000000000000000000000000000000", algorithm=MD5, '
        b'qop=auth, nc=00000001, cnonce="c1"'
    )
    answer = await sip.ask(register(sip, authorization, "cred-2"))
    assert answer.status == 403, answer.status
    # the issue's own reproduction: a nonce that is not ours, no qop
    bare = b'Digest username="' + username + b'", realm="meetings.local", nonce="x", uri="sip:x", response="00"'
    answer = await sip.ask(register(sip, bare, "cred-3"))
    assert 400 <= answer.status < 500, answer.status
    no_traceback(caplog)


async def test_undecodable_other_parameters_are_refused(
    api: Api, sip: SipPeer, caplog: pytest.LogCaptureFixture
) -> None:
    me = await api.call("GET", "/api/confd/1.1/users/me", api.admin_token)
    user = me["sip"]["username"].encode()
    nonce = await fresh_nonce(sip)
    for field in (b'uri="sip:\xff"', b'cnonce="\xfe\xff"', b'nonce="\xff.\xff"', b'response="\xff"'):
        base = {
            b"uri": b'uri="sip:meetings.local"',
            b"cnonce": b'cnonce="c1"',
            b"nonce": b'nonce="' + nonce.encode() + b'"',
            b"response": b'response="00"',
        }
        base[field.split(b"=")[0]] = field
        authorization = (
            b'Digest username="' + user + b'", realm="meetings.local", ' + b", ".join(base.values()) + b", "
            b"algorithm=MD5, qop=auth, nc=00000001"
        )
        answer = await sip.ask(register(sip, authorization, "cred-" + field[:3].decode()))
        assert answer.status == 403, (field, answer.status)
    no_traceback(caplog)


@pytest.mark.parametrize("username", ["ad\x00min", "admin\x1b[2J", "\x7f"])
async def test_control_characters_in_a_basic_login_are_a_401(
    api: Api, caplog: pytest.LogCaptureFixture, username: str
) -> None:
    basic = base64.b64encode(f"{username}:x".encode()).decode()
    response = await api.request("POST", "/api/auth/0.1/token", headers={"Authorization": f"Basic {basic}"})
    assert response.status == 401
    no_traceback(caplog)


@pytest.mark.parametrize("extension", [b"\xff\xfe", b"a\x01b"], ids=["invalid-utf8", "control"])
async def test_an_undecodable_extension_dialled_is_a_404(
    api: Api, sip: SipPeer, caplog: pytest.LogCaptureFixture, extension: bytes
) -> None:
    """The Request-URI's user part is looked up as a meeting exten: bytes that are no text are no meeting."""
    caplog.set_level(logging.INFO)
    me = await api.call("GET", "/api/confd/1.1/users/me", api.admin_token)
    user, password = me["sip"]["username"], me["sip"]["password"]

    def invite(cseq: int, extra: list[str]) -> bytes:
        text = request("INVITE", "sip:@EXTEN@@meetings.local", sip.port, call_id="exten-1", cseq=cseq,
                       to="<sip:x@meetings.local>", contact=f"<sip:{user}@127.0.0.1:{sip.port}>", body=OFFER,
                       extra=extra)  # fmt: skip
        return text.replace(b"@EXTEN@", extension)

    challenge = await sip.ask(invite(1, []))
    assert challenge.status == 401
    client = DigestClient(DigestCredentials(user, password))
    # the digest covers a plain uri: the server checks the answer, not that it matches the request line
    value = client.authorization(challenge.headers.get_all("www-authenticate")[0], "INVITE", "sip:x@meetings.local")
    answer = await sip.ask(invite(2, [f"Authorization: {value}"]))
    assert 400 <= answer.status < 500, answer.status
    no_traceback(caplog)
    if extension == b"\xff\xfe":
        assert any("INVITE \\udcff\\udcfe" in r.getMessage() for r in caplog.records)
