"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 7616, RFC 8760).

Server side, `DigestChallenger`: challenges (qop=auth) with the algorithms it is given, one WWW-Authenticate value
each in the given order (RFC 8760: most preferred first), and checks credentials. Nonces are
stateless: a timestamp, random bytes and an HMAC of both under a server secret, so any nonce we did not make,
or one that has expired, is refused without a table. A small bounded table remembers the highest nonce-count
seen per nonce, to refuse replays.

Client side, `DigestClient`: answers a 401/407 challenge (qop=auth with cnonce and nc, or RFC 2069 style).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from .uri import split_commas, unquote

__all__ = [
    "CHALLENGE_ALGORITHMS",
    "AuthOutcome",
    "DigestChallenger",
    "DigestClient",
    "DigestCredentials",
    "canonical_algorithm",
    "compute_response",
    "credentials_are_text",
    "parse_auth_params",
]

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
#: The algorithm names a challenge may carry, spelled as RFC 7616 section 6.1 registers them.
CHALLENGE_ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")


def canonical_algorithm(name: str) -> str:
    """The registered spelling of a digest algorithm name (they compare without case); ValueError if unknown."""
    for known in CHALLENGE_ALGORITHMS:
        if known.upper() == name.strip().upper():
            return known
    raise ValueError(f"unknown digest algorithm {name!r} (known: {', '.join(CHALLENGE_ALGORITHMS)})")


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


# `name=value` and `name="quoted"` items separated by commas, the well-formed shape every client sends, read by
# one findall; any character no item covers shows in the last group, and then (empty items, blanks inside a
# token, angle brackets ...) the general way is taken. The grammar is unambiguous: the items are the ones the
# general split finds.
_AUTH_ITEMS = re.compile(
    r'[ \t]*([^=,"<>\s]+)[ \t]*=[ \t]*("[^"\\]*(?:\\.[^"\\]*)*"|[^",<>\s]*)[ \t]*(?:,|\Z)|(.)', re.S
)


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """`Digest realm="x", nonce="y"` -> ("digest", {"realm": "x", "nonce": "y"}), names lower-cased."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    params: dict[str, str] = {}
    for name, val, stray in _AUTH_ITEMS.findall(rest):
        if stray:
            return scheme.lower(), _auth_params_general(rest)
        if val[:1] == '"':
            val = val[1:-1] if "\\" not in val else unquote(val)
        params[name.lower()] = val
    return scheme.lower(), params


# Longest parameter value a credential may carry: nonces and digests are well under it, names too.
MAX_CREDENTIAL_VALUE = 512


def credentials_are_text(params: dict[str, str]) -> bool:
    """Whether every parameter of an Authorization header is printable text a client could have meant.

    The message parser keeps bytes that are not UTF-8 as lone surrogates (`surrogateescape`), and quoted-pairs
    may carry control characters: neither can be encoded for a database query, a hash or a log line, and no
    account, nonce or digest of ours holds one. Such credentials are refused like a wrong password.
    """
    return all(len(value) <= MAX_CREDENTIAL_VALUE and value.isprintable() for value in params.values())


def _auth_params_general(rest: str) -> dict[str, str]:
    """Any shape: comma-separated items (outside quotes), `name=value` ones kept, the rest ignored."""
    params: dict[str, str] = {}
    for item in split_commas(rest):
        name, eq, val = item.partition("=")
        if eq:
            params[name.strip().lower()] = unquote(val.strip())
    return params


def compute_response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
    ha1: str | None = None,
) -> str:
    """The request-digest of RFC 7616 section 3.4.1 (algorithm MD5, SHA-256 and their -sess variants)."""
    sess = algorithm.upper().endswith("-SESS")
    base = algorithm.upper()[:-5] if sess else algorithm.upper()
    if ha1 is None:
        ha1 = _h(base, f"{username}:{realm}:{password}")
    if sess:
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _h(base, f"{method}:{uri}:{ALGORITHMS[base](body).hexdigest()}")
    else:
        ha2 = _h(base, f"{method}:{uri}")
    if qop:
        return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(base, f"{ha1}:{nonce}:{ha2}")


class AuthOutcome(Enum):
    OK = "ok"
    MISSING = "missing"  # no credentials for our realm: challenge
    STALE = "stale"  # good credentials, but an expired nonce or a used count: challenge with stale=true
    INVALID = "invalid"  # wrong password, forged nonce, bad syntax: 403


@dataclass(slots=True)
class AuthCheck:
    outcome: AuthOutcome
    username: str | None = None


class DigestChallenger:
    """Makes challenges and verifies answers for one realm."""

    def __init__(
        self,
        realm: str,
        secret: bytes | None = None,
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("MD5",),
        max_tracked_nonces: int = 100_000,
    ) -> None:
        # MD5 alone by default: clients of an older digest (baresip 1.0's libre) give up on a 401 that holds any
        # algorithm they do not know, whatever else it offers, and sip.js 0.21 answers only the last challenge,
        # and only if it is MD5.
        if not algorithms:
            raise ValueError("at least one digest algorithm is needed")
        self.algorithms = tuple(canonical_algorithm(name) for name in algorithms)
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ValueError(f"digest algorithms listed twice: {', '.join(algorithms)}")
        self._accepted = {name.upper() for name in self.algorithms}
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret or secrets.token_bytes(32)
        key = self._secret if len(self._secret) <= 64 else hashlib.sha256(self._secret).digest()
        key = key.ljust(64, b"\0")
        self._hmac_inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._hmac_outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._nc_seen: OrderedDict[str, int] = OrderedDict()
        self._max_tracked = max_tracked_nonces

    # -- nonces -----------------------------------------------------------------------------------------------
    def _sign(self, stamp: str) -> str:
        # HMAC-SHA256 (RFC 2104) from the keyed inner and outer states made once: the same value as
        # hmac.new(secret, msg, sha256), at a third of its cost.
        inner = self._hmac_inner.copy()
        inner.update(f"{stamp}:{self.realm}".encode())
        outer = self._hmac_outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]

    def make_nonce(self, now: float | None = None) -> str:
        stamp = f"{int(now if now is not None else time.time()):x}.{secrets.token_hex(8)}"
        return f"{stamp}.{self._sign(stamp)}"

    def nonce_state(self, nonce: str, now: float | None = None) -> AuthOutcome:
        stamp, dot, sig = nonce.rpartition(".")
        if not dot or not hmac.compare_digest(sig, self._sign(stamp)):
            return AuthOutcome.INVALID
        try:
            issued = int(stamp.partition(".")[0], 16)
        except ValueError:
            return AuthOutcome.INVALID
        t = now if now is not None else time.time()
        if t - issued > self.nonce_lifetime or issued - t > 5:
            return AuthOutcome.STALE
        return AuthOutcome.OK

    def challenges(self, stale: bool = False) -> list[str]:
        """The WWW-Authenticate (or Proxy-Authenticate) values: one per algorithm, same nonce."""
        nonce = self.make_nonce()
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
            for alg in self.algorithms
        ]

    # -- checking ---------------------------------------------------------------------------------------------
    def credentials_for_realm(self, header_values: list[str]) -> dict[str, str] | None:
        for value in header_values:
            scheme, params = parse_auth_params(value)
            if scheme == "digest" and params.get("realm") == self.realm:
                return params
        return None

    def verify(self, params: dict[str, str], method: str, password: str, body: bytes = b"") -> AuthCheck:
        """Check an Authorization header's parameters against the account's password."""
        username = params.get("username")
        nonce = params.get("nonce", "")
        uri = params.get("uri")
        response = params.get("response", "")
        algorithm = params.get("algorithm", "MD5").upper()
        qop = params.get("qop")
        nc = params.get("nc", "")
        cnonce = params.get("cnonce", "")
        if not username or uri is None or algorithm not in self._accepted or not credentials_are_text(params):
            return AuthCheck(AuthOutcome.INVALID, username)
        if qop != "auth" or len(nc) != 8 or not cnonce:
            return AuthCheck(AuthOutcome.INVALID, username)
        try:
            nc_value = int(nc, 16)
        except ValueError:
            return AuthCheck(AuthOutcome.INVALID, username)
        state = self.nonce_state(nonce)
        if state is AuthOutcome.INVALID:
            return AuthCheck(AuthOutcome.INVALID, username)
        expected = compute_response(algorithm, username, self.realm, password, method, uri, nonce, qop, nc, cnonce)
        if not hmac.compare_digest(expected, response.lower()):
            return AuthCheck(AuthOutcome.INVALID, username)
        if state is AuthOutcome.STALE:
            return AuthCheck(AuthOutcome.STALE, username)
        key = f"{algorithm}:{nonce}"
        last = self._nc_seen.get(key)
        if last is not None and nc_value <= last:
            # A replayed count is refused; the fresh challenge lets an honest client that reused it (sip.js
            # un-registering) answer again, which a replayer without the password cannot.
            return AuthCheck(AuthOutcome.STALE, username)
        self._remember(key, nc_value)
        return AuthCheck(AuthOutcome.OK, username)

    def _remember(self, nonce: str, nc: int) -> None:
        seen = self._nc_seen
        if nonce in seen:
            seen[nonce] = nc
            return
        seen[nonce] = nc
        if len(seen) > self._max_tracked:
            # drop the oldest; they are the first to expire anyway
            for _ in range(len(seen) - self._max_tracked):
                seen.popitem(last=False)


@dataclass(slots=True)
class DigestCredentials:
    username: str
    password: str
    realm: str | None = None  # None: answer any realm


class DigestClient:
    """Answers digest challenges for one set of credentials, counting nonce uses."""

    def __init__(self, credentials: DigestCredentials) -> None:
        self.credentials = credentials
        self._nc: dict[str, int] = {}

    def authorization(self, challenge: str, method: str, uri: str, body: bytes = b"") -> str | None:
        """The Authorization/Proxy-Authorization value for a WWW-/Proxy-Authenticate value, or None when the
        challenge is not one we can answer (other scheme, algorithm or realm)."""
        scheme, params = parse_auth_params(challenge)
        if scheme != "digest":
            return None
        realm = params.get("realm", "")
        if self.credentials.realm is not None and self.credentials.realm != realm:
            return None
        algorithm = params.get("algorithm", "MD5")
        base = algorithm.upper()[:-5] if algorithm.upper().endswith("-SESS") else algorithm.upper()
        if base not in ALGORITHMS:
            return None
        nonce = params.get("nonce", "")
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        qop = "auth" if "auth" in qops else ("auth-int" if "auth-int" in qops else None)
        cnonce = secrets.token_hex(8) if qop or algorithm.upper().endswith("-SESS") else None
        nc_text: str | None = None
        if qop:
            count = self._nc.get(nonce, 0) + 1
            self._nc[nonce] = count
            nc_text = f"{count:08x}"
        user = self.credentials.username
        response = compute_response(
            algorithm, user, realm, self.credentials.password, method, uri, nonce, qop, nc_text, cnonce, body
        )
        parts = [
            f'Digest username="{user}"',
            f'realm="{realm}"',
            f'nonce="{nonce}"',
            f'uri="{uri}"',
            f'response="{response}"',
            f"algorithm={algorithm}",
        ]
        if "opaque" in params:
            parts.append(f'opaque="{params["opaque"]}"')
        if qop:
            parts += [f"qop={qop}", f'cnonce="{cnonce}"', f"nc={nc_text}"]
        return ", ".join(parts)

    @staticmethod
    def pick_challenge(values: list[str]) -> str | None:
        """The strongest digest challenge we support among several (SHA-256 over MD5)."""
        best: tuple[int, str] | None = None
        for v in values:
            scheme, params = parse_auth_params(v)
            if scheme != "digest":
                continue
            alg = params.get("algorithm", "MD5").upper()
            rank = {"SHA-256": 3, "SHA-256-SESS": 2, "MD5": 1, "MD5-SESS": 0}.get(alg)
            if rank is not None and (best is None or rank > best[0]):
                best = (rank, v)
        return best[1] if best else None
