"""SDES-SRTP for phones (RFC 4568): keys exchanged in the SDP's `a=crypto` lines, media encrypted with pylibsrtp.

A phone on the internet that offers `RTP/SAVP` gets encrypted media: the answer takes the first crypto line whose
suite we support, with a key of our own, and each side protects what it sends with its own key. The keys travel in
the SDP, so they are only as secret as the signalling: pair this with SIP over TLS. aiortc's SDP parser keeps no
`a=crypto` line, so they are read here from the section's text; the cipher work is pylibsrtp's (libsrtp).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

import pylibsrtp

#: the suites libsrtp gives us with a 16-byte key and a 14-byte salt (RFC 4568 section 6.2), best first
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
KEY_SALT_LENGTH = 30

_CRYPTO = re.compile(r"^a=crypto:(\d{1,9})\s+(\S+)\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class CryptoAttribute:
    tag: int
    suite: str
    key_salt: bytes

    def line(self) -> str:
        return f"a=crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.key_salt).decode()}"


def offered(section: str) -> list[CryptoAttribute]:
    """The usable `a=crypto` lines of one media section, in the offer's order of preference. A line is skipped if
    its suite is unknown to us, its key is not one inline key of the right length, or it asks for an MKI or for
    session parameters (we support neither)."""
    found = []
    for tag, suite, params in _CRYPTO.findall(section):
        if suite not in SUITES or " " in params or ";" in params:
            continue
        key_param = params.split("|")
        if not key_param[0].startswith("inline:") or len(key_param) > 2:
            continue  # two parts at most: the key and a lifetime; a third one is an MKI
        try:
            key_salt = base64.b64decode(key_param[0][len("inline:") :], validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(key_salt) == KEY_SALT_LENGTH:
            found.append(CryptoAttribute(int(tag), suite, key_salt))
    return found


def answer_for(offer: CryptoAttribute) -> CryptoAttribute:
    """Our answer to the chosen offer: same tag and suite, a fresh key of our own."""
    return CryptoAttribute(offer.tag, offer.suite, os.urandom(KEY_SALT_LENGTH))


class SrtpContext:
    """Both directions of one RTP stream: what we send is protected with our key, what we receive is checked and
    decrypted with the peer's."""

    def __init__(self, ours: CryptoAttribute, theirs: CryptoAttribute) -> None:
        profile = SUITES[ours.suite]
        self._tx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(
                key=ours.key_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
            )
        )
        self._rx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(
                key=theirs.key_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
            )
        )

    def protect(self, packet: bytes) -> bytes:
        return bytes(self._tx.protect(packet))

    def protect_rtcp(self, packet: bytes) -> bytes:
        return bytes(self._tx.protect_rtcp(packet))

    def unprotect(self, packet: bytes) -> bytes | None:
        """The clear packet, or None for one that fails authentication (forged, replayed or damaged)."""
        try:
            return bytes(self._rx.unprotect(packet))
        except pylibsrtp.Error:
            return None

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return bytes(self._rx.unprotect_rtcp(packet))
        except pylibsrtp.Error:
            return None
