"""SDES crypto lines (RFC 4568) as phones write them: which the leg takes, which it passes over."""

from __future__ import annotations

import base64
import os
import struct

from sfu.sdes import SrtpContext, answer_for, offered

KEY = base64.b64encode(os.urandom(30)).decode()


def test_takes_the_supported_suites_in_the_offers_order() -> None:
    section = (
        "m=audio 4000 RTP/SAVP 0\r\n"
        "a=crypto:1 AEAD_AES_256_GCM inline:" + base64.b64encode(os.urandom(44)).decode() + "\r\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31\r\n"
        f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    )
    taken = [(c.tag, c.suite) for c in offered(section)]
    assert taken == [(2, "AES_CM_128_HMAC_SHA1_32"), (3, "AES_CM_128_HMAC_SHA1_80")]


def test_passes_over_what_it_cannot_honour() -> None:
    short = base64.b64encode(os.urandom(20)).decode()
    section = (
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4\r\n"  # an MKI
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{short}\r\n"  # a key of the wrong length
        "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:not*base64\r\n"
        f"a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP\r\n"  # session parameters
        f"a=crypto:5 F8_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    )
    assert offered(section) == []


def test_each_side_reads_what_the_other_protects_and_refuses_a_forgery() -> None:
    (theirs,) = offered(f"a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n")
    ours = answer_for(theirs)
    assert ours.tag == 7 and ours.suite == theirs.suite and ours.key_salt != theirs.key_salt
    assert ours.line().startswith("a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:")
    server, phone = SrtpContext(ours, theirs), SrtpContext(theirs, ours)
    packet = struct.pack("!BBHII", 0x80, 0, 1, 160, 42) + b"\xff" * 160
    sent = phone.protect(packet)
    assert sent != packet and server.unprotect(sent) == packet
    assert phone.unprotect(server.protect(packet)) == packet
    forged = sent[:20] + bytes([sent[20] ^ 1]) + sent[21:]
    assert server.unprotect(forged) is None
