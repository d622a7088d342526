"""TLS contexts from the settings: HTTPS/WSS and SIP over TLS serve with a certificate; the Asterisk bridge
connects with a context that says whom it trusts. One place, so the three agree on how a context is made."""

from __future__ import annotations

import ssl

from gateway.config import Settings


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def http_context(settings: Settings) -> ssl.SSLContext | None:
    http = settings.http
    return server_context(http.tls_cert, http.tls_key) if http.tls_cert and http.tls_key else None


def sip_context(settings: Settings) -> ssl.SSLContext | None:
    """SIP over TLS's certificate: its own, else the HTTP one (one name for the whole server is the usual case)."""
    if settings.sip.tls_port is None:
        return None
    cert = settings.sip.tls_cert or settings.http.tls_cert
    key = settings.sip.tls_key or settings.http.tls_key
    assert cert and key  # the settings' validation makes sure
    return server_context(cert, key)


def asterisk_client_context(settings: Settings) -> ssl.SSLContext:
    """Whom the bridge trusts when it reaches Asterisk over TLS: a CA file, else the system's; or nobody's word
    at all when the operator turned verification off (a self-signed Asterisk on a private network)."""
    context = ssl.create_default_context(cafile=settings.asterisk.tls_ca)
    if not settings.asterisk.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
