"""A self-signed certificate for the tests that serve TLS (HTTPS and WSS, SIP over TLS), and the settings of a
server for phones on the internet (SIP over TLS, encrypted media required)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Settings
from tests.conftest import make_settings


def certificate_in(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "tls"
    folder.mkdir()
    return self_signed(folder)


def secure_phone_settings(database_url: str, certificate: tuple[Path, Path]) -> Settings:
    """SIP over TLS on a free port with `certificate`, and plain RTP refused (SDES-SRTP or 488)."""
    cert, key = certificate
    return make_settings(
        database_url,
        MEETINGS_SIP__TLS_PORT="0",
        MEETINGS_SIP__TLS_CERT=str(cert),
        MEETINGS_SIP__TLS_KEY=str(key),
        MEETINGS_MEDIA__ALLOW_PLAIN_RTP="false",
    )


def self_signed(tmp_path: Path, name: str = "localhost") -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    # valid for the name and for 127.0.0.1, so a client that checks host names accepts it on loopback
    names = x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).add_extension(names, critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file
