"""Our lean client agrees with httpx on status, body length and keyword on the same servers."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx

from lab.certs import make_ca
from probes.http import probe_http_many
from probes.model import HttpTarget
from tests.probes import http_servers as srv

PATHS = ["/", "/status/404", "/status/503", "/chunked", "/bytes?n=100000", "/redirect", "/nope"]


def compare(base: str, *, ca_file: Path | None = None) -> None:
    targets = [
        HttpTarget(i, base + path, expect_keyword="Conectado") for i, path in enumerate(PATHS)
    ]
    ours = asyncio.run(probe_http_many(targets, timeout=5, ca_file=ca_file))
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    )
    with httpx.Client(follow_redirects=False, verify=verify, timeout=5) as client:
        for target, out in zip(targets, ours, strict=True):
            ref = client.get(target.url)
            assert out.status_code == ref.status_code, target.url
            assert out.bytes_read == len(ref.content), target.url
            if ref.status_code < 400:
                assert out.keyword_found == (b"Conectado" in ref.content), target.url
                assert out.ok == (b"Conectado" in ref.content), target.url
            else:
                assert not out.ok


def test_same_results_as_httpx_over_http() -> None:
    with srv.stdlib_server() as (host, port):
        compare(f"http://{host}:{port}")


def test_same_results_as_httpx_over_https(tmp_path: Path) -> None:
    ca = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    with srv.tls_server(tmp_path, ca, "127.0.0.31") as (host, port):
        compare(f"https://{host}:{port}", ca_file=ca_file)


def test_same_results_as_httpx_on_close_delimited_bodies() -> None:
    with srv.raw_server(srv.close_delimited) as (host, port):
        url = f"http://{host}:{port}/"
        out = asyncio.run(probe_http_many([HttpTarget(1, url)]))[0]
        ref = httpx.get(url)
    assert (out.status_code, out.bytes_read) == (ref.status_code, len(ref.content))
