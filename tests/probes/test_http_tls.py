"""HTTPS probes against real TLS servers with good and broken certificates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.certs import CertFlaw, LabCa, make_ca
from probes.http import probe_http
from probes.model import ErrorClass, HttpOutcome, HttpTarget
from tests.probes import http_servers as srv


@pytest.fixture(scope="module")
def ca() -> LabCa:
    return make_ca("Conectado test CA")


@pytest.fixture
def ca_file(ca: LabCa, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem)
    return path


def run(url: str, **kwargs: object) -> HttpOutcome:
    return asyncio.run(
        probe_http(HttpTarget(7, url, expect_keyword="Conectado"), timeout=3, **kwargs)  # type: ignore[arg-type]
    )


def test_good_certificate_is_verified_and_days_left_reported(
    ca: LabCa, ca_file: Path, tmp_path: Path
) -> None:
    with srv.tls_server(tmp_path, ca, "127.0.0.21") as (host, port):
        out = run(f"https://{host}:{port}/", ca_file=ca_file)
    assert out.ok, out
    assert out.status_code == 200 and out.keyword_found
    assert out.tls_days_left is not None and 89 < out.tls_days_left < 90.01


def test_untrusted_ca_is_a_tls_error(ca: LabCa, tmp_path: Path) -> None:
    with srv.tls_server(tmp_path, ca, "127.0.0.22") as (host, port):
        out = run(f"https://{host}:{port}/")  # system CAs only
    assert out.error == ErrorClass.TLS
    assert "unable to get local issuer" in (out.error_detail or "")


@pytest.mark.parametrize(
    ("flaw", "words"),
    [
        (CertFlaw.EXPIRED, "certificate has expired"),
        (CertFlaw.SELF_SIGNED, "self-signed certificate"),
        (CertFlaw.WRONG_NAME, "IP address mismatch"),
    ],
)
def test_broken_certificates_are_tls_errors(
    ca: LabCa, ca_file: Path, tmp_path: Path, flaw: CertFlaw, words: str
) -> None:
    with srv.tls_server(tmp_path, ca, "127.0.0.23", flaw) as (host, port):
        out = run(f"https://{host}:{port}/", ca_file=ca_file)
    assert not out.ok and out.error == ErrorClass.TLS
    assert words in (out.error_detail or ""), out.error_detail
    assert out.connect_ms is not None and out.status_code is None


def test_without_verification_an_expired_certificate_shows_negative_days(
    ca: LabCa, tmp_path: Path
) -> None:
    with srv.tls_server(tmp_path, ca, "127.0.0.24", CertFlaw.EXPIRED) as (host, port):
        out = run(f"https://{host}:{port}/", verify_tls=False)
    assert out.ok and out.status_code == 200
    assert out.tls_days_left is not None and -1.01 < out.tls_days_left < -0.99


def test_plain_http_to_a_tls_port_and_tls_to_a_plain_port(ca: LabCa, tmp_path: Path) -> None:
    with srv.tls_server(tmp_path, ca, "127.0.0.25") as (host, port):
        plain = run(f"http://{host}:{port}/")
    with srv.stdlib_server("127.0.0.26") as (host, port):
        tls = run(f"https://{host}:{port}/")
    # The TLS server fails the handshake on our plaintext and resets the connection.
    assert plain.error == ErrorClass.REFUSED and "reset" in (plain.error_detail or "")
    assert tls.error == ErrorClass.TLS
