"""TLS certificates for the lab and tests: a lab CA, good and deliberately broken server certs.

Keys are ECDSA P-256 (handshakes are several times cheaper than RSA-2048, which matters when
the lab serves thousands of https sites). Nothing here is for production use.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class CertFlaw(StrEnum):
    """How a lab server certificate is broken (or ``GOOD``)."""

    GOOD = "good"
    EXPIRED = "expired"
    SELF_SIGNED = "self_signed"
    WRONG_NAME = "wrong_name"


@dataclass(frozen=True)
class LabCa:
    """A certificate authority the prober can be told to trust (``CONECTADO_HTTP_CA_FILE``)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str = "Conectado lab CA", *, days: int = 3650) -> LabCa:
    """Create a self-signed CA valid from yesterday for ``days`` days."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return LabCa(key, cert)


def server_cert(
    ca: LabCa,
    key: ec.EllipticCurvePrivateKey,
    host: str,
    *,
    flaw: CertFlaw = CertFlaw.GOOD,
    days: int = 90,
) -> bytes:
    """Return a PEM server certificate for ``host`` (an IP or DNS name), broken as ``flaw`` says.

    ``EXPIRED`` ended yesterday; ``SELF_SIGNED`` is signed by its own key, not the CA;
    ``WRONG_NAME`` names another host. ``days`` is the validity left for a good certificate.
    """
    now = datetime.now(UTC)
    named = "wrong.conectado.invalid" if flaw == CertFlaw.WRONG_NAME else host
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(named))
    except ValueError:
        san = x509.DNSName(named)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, named)])
    if flaw == CertFlaw.EXPIRED:
        start, end = now - timedelta(days=400), now - timedelta(days=1)
    else:
        start, end = now - timedelta(days=1), now + timedelta(days=days)
    issuer = subject if flaw == CertFlaw.SELF_SIGNED else ca.cert.subject
    signer = key if flaw == CertFlaw.SELF_SIGNED else ca.key
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def server_context(cert_pem: bytes, key_file: Path, cert_file: Path) -> ssl.SSLContext:
    """A server TLS context for ``cert_pem`` (written to ``cert_file``) and the key in
    ``key_file`` (ssl can only load certificates from files)."""
    cert_file.write_bytes(cert_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return ctx
