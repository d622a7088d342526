"""Digest: published examples, our nonces, and the client answering a challenge."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.digest import (
    AuthOutcome,
    DigestChallenger,
    DigestClient,
    DigestCredentials,
    _auth_params_general,
    canonical_algorithm,
    compute_response,
    parse_auth_params,
)


def test_rfc2617_example() -> None:
    # RFC 2617 section 3.5
    r = compute_response(
        "MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001", "0a4f113b",
    )  # fmt: skip
    assert r == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_examples() -> None:
    # RFC 7616 section 3.9.1, SHA-256 and MD5
    args = ("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "auth", "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")  # fmt: skip
    assert compute_response("SHA-256", *args) == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert compute_response("MD5", *args) == "8ca523f5e9506fed4657c9700eebdbec"


def _answer(ch: DigestChallenger, challenge: str, password: str = "pw", method: str = "REGISTER") -> dict[str, str]:
    client = DigestClient(DigestCredentials("alice", password))
    value = client.authorization(challenge, method, "sip:meetings.test")
    assert value is not None
    return parse_auth_params(value)[1]


def test_challenges_are_md5_alone_by_default() -> None:
    challenges = DigestChallenger("meetings.test").challenges()
    assert [parse_auth_params(c)[1]["algorithm"] for c in challenges] == ["MD5"]


@pytest.mark.parametrize(
    "algorithms",
    [("SHA-256", "MD5"), ("SHA-256-sess", "sha-256", "MD5-SESS", "md5"), ("MD5",)],
)
def test_challenges_follow_the_given_order_once_each_and_every_one_verifies(algorithms: tuple[str, ...]) -> None:
    ch = DigestChallenger("meetings.test", algorithms=algorithms)
    challenges = ch.challenges()
    named = [parse_auth_params(c)[1]["algorithm"] for c in challenges]
    assert named == [canonical_algorithm(a) for a in algorithms]  # the registered spelling, no repeats
    assert all('qop="auth"' in c for c in challenges)
    assert len({parse_auth_params(c)[1]["nonce"] for c in challenges}) == 1
    for c in challenges:
        assert ch.verify(_answer(ch, c), "REGISTER", "pw").outcome is AuthOutcome.OK
    if "SHA-256" in named:
        # our own client (towards Asterisk) prefers SHA-256 when it can choose
        assert "algorithm=SHA-256," in (DigestClient.pick_challenge(challenges) or "")


def test_an_algorithm_not_challenged_with_is_refused() -> None:
    sha_only = DigestChallenger("meetings.test", algorithms=("SHA-256",))
    md5 = f'Digest realm="meetings.test", nonce="{sha_only.make_nonce()}", algorithm=MD5, qop="auth"'
    assert sha_only.verify(_answer(sha_only, md5), "REGISTER", "pw").outcome is AuthOutcome.INVALID


@pytest.mark.parametrize("algorithms", [(), ("MD5", "md5"), ("SHA-512",)])
def test_bad_algorithm_lists_are_refused(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        DigestChallenger("meetings.test", algorithms=algorithms)


def test_wrong_password_method_or_forged_nonce_refused() -> None:
    ch = DigestChallenger("meetings.test")
    c = ch.challenges()[0]
    assert ch.verify(_answer(ch, c, "bad"), "REGISTER", "pw").outcome is AuthOutcome.INVALID
    assert ch.verify(_answer(ch, c), "INVITE", "pw").outcome is AuthOutcome.INVALID
    other = DigestChallenger("meetings.test")  # another secret: its nonces are not ours
    assert ch.verify(_answer(other, other.challenges()[0]), "REGISTER", "pw").outcome is AuthOutcome.INVALID


def test_nonce_count_replay_refused_and_increment_accepted() -> None:
    ch = DigestChallenger("meetings.test")
    c = ch.challenges()[0]
    client = DigestClient(DigestCredentials("alice", "pw"))
    first = parse_auth_params(client.authorization(c, "REGISTER", "sip:x") or "")[1]
    assert ch.verify(first, "REGISTER", "pw").outcome is AuthOutcome.OK
    assert ch.verify(first, "REGISTER", "pw").outcome is AuthOutcome.STALE  # same nc again: replay, challenged anew
    second = parse_auth_params(client.authorization(c, "REGISTER", "sip:x") or "")[1]
    assert second["nc"] == "00000002"
    assert ch.verify(second, "REGISTER", "pw").outcome is AuthOutcome.OK


def test_expired_nonce_is_stale() -> None:
    ch = DigestChallenger("meetings.test", nonce_lifetime=60)
    old = ch.make_nonce(time.time() - 120)
    c = f'Digest realm="meetings.test", nonce="{old}", algorithm=MD5, qop="auth"'
    assert ch.verify(_answer(ch, c), "REGISTER", "pw").outcome is AuthOutcome.STALE
    assert ch.nonce_state(ch.make_nonce()) is AuthOutcome.OK


def test_qop_is_required() -> None:
    ch = DigestChallenger("meetings.test")
    nonce = ch.make_nonce()
    c = f'Digest realm="meetings.test", nonce="{nonce}", algorithm=MD5'  # RFC 2069 style answer
    params = _answer(ch, c)
    assert "qop" not in params
    assert ch.verify(params, "REGISTER", "pw").outcome is AuthOutcome.INVALID


def test_client_ignores_other_realm_and_unknown_algorithm() -> None:
    client = DigestClient(DigestCredentials("a", "b", realm="asterisk"))
    assert client.authorization('Digest realm="other", nonce="n", qop="auth"', "INVITE", "sip:x") is None
    c2 = DigestClient(DigestCredentials("a", "b"))
    assert c2.authorization('Digest realm="r", nonce="n", algorithm=SHA-512-256', "INVITE", "sip:x") is None
    assert c2.authorization('Basic realm="r"', "INVITE", "sip:x") is None


# -- the fast reading of Authorization values gives what the general one does --------------------------------------
AUTH_PIECES = ["username", "nonce", "=", ",", ", ", " ", "\t", '"', "\\", "<", ">", "x=1", 'q="a,b"', "é", "\r\n", ";"]


def test_auth_params_fast_path_on_real_values() -> None:
    value = (
        'Digest username="user1", realm="bench.local", nonce="6b04e56c.09ab.4c91", uri="sip:127.0.0.1:5070", '
        'response="0123456789abcdef", algorithm=MD5, cnonce="a\\"b", qop=auth, nc=00000001,'
    )
    scheme, params = parse_auth_params(value)
    assert scheme == "digest"
    assert params == {
        "username": "user1",
        "realm": "bench.local",
        "nonce": "6b04e56c.09ab.4c91",
        "uri": "sip:127.0.0.1:5070",
        "response": "0123456789abcdef",
        "algorithm": "MD5",
        "cnonce": 'a"b',
        "qop": "auth",
        "nc": "00000001",
    }
    assert params == _auth_params_general(value.partition(" ")[2])
    # shapes the fast path leaves to the general one
    for odd in ("Digest a=1,,b=2", "Digest a=1 b, c=<x,y>", 'Digest a="x"y, b', 'Digest  a = "1" , B=2 '):
        assert parse_auth_params(odd)[1] == _auth_params_general(odd.strip().partition(" ")[2])


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(AUTH_PIECES) | st.text(max_size=3), max_size=16))
def test_auth_params_fast_path_matches_the_general_split(pieces: list[str]) -> None:
    value = "Digest " + "".join(pieces)
    scheme, params = parse_auth_params(value)
    assert scheme == "digest"
    assert params == _auth_params_general(value.strip().partition(" ")[2])


def test_nonce_signature_is_hmac_sha256_of_stamp_and_realm() -> None:
    for secret in (b"k", b"s" * 64, b"long" * 40):
        ch = DigestChallenger("meetings.test", secret)
        stamp, _, sig = ch.make_nonce().rpartition(".")
        assert sig == hmac.new(secret, f"{stamp}:meetings.test".encode(), hashlib.sha256).hexdigest()[:32]
        assert ch.nonce_state(f"{stamp}.{sig}") is AuthOutcome.OK
