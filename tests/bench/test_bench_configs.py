"""Rendered sidecar configs require mutual TLS and one worker, and nginx accepts them."""
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import configs
from bench.certs import generate

HOP_C = configs.Hop("127.0.0.1", 15080, "198.18.251.2", 15443)
HOP_S = configs.Hop("198.18.251.2", 15443, "127.0.0.1", 8080)


def _tls(pki, side):
    own = pki.client if side == "client" else pki.server
    return configs.TlsFiles(cert=own.cert, key=own.key, chain=own.chain, ca=pki.ca,
                            peer_name="server.bench" if side == "client" else "client.bench")


def test_mutual_tls_on_both_sides(tmp_path: Path):
    pki = generate(tmp_path / "pki")
    c = configs.nginx_client_side(tmp_path, HOP_C, _tls(pki, "client"))
    s = configs.nginx_server_side(tmp_path, HOP_S, _tls(pki, "server"))
    assert "proxy_ssl_certificate " in c and "proxy_ssl_verify on;" in c and "worker_processes 1;" in c
    assert "ssl_verify_client on;" in s and "listen 198.18.251.2:15443 ssl;" in s
    hc = configs.haproxy_client_side(HOP_C, _tls(pki, "client"))
    hs = configs.haproxy_server_side(HOP_S, _tls(pki, "server"))
    assert "ssl crt" in hc and "verify required" in hc and "nbthread 1" in hc
    assert "verify required" in hs and f"ca-file {pki.ca}" in hs


def test_generated_certificates_chain_to_the_root(tmp_path: Path):
    from cryptography import x509

    pki = generate(tmp_path)
    root = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    for leaf in (pki.client, pki.server):
        cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
        cert.verify_directly_issued_by(root)
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
        assert len(uris) == 1 and uris[0].startswith("spiffe://bench.local/ns/bench/sa/")
        assert leaf.chain.read_bytes().startswith(leaf.cert.read_bytes())


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
@pytest.mark.parametrize("which", ["backend", "client", "server"])
def test_nginx_accepts_the_configs(tmp_path: Path, which: str):
    pki = generate(tmp_path / "pki")
    text = {
        "backend": lambda: configs.nginx_backend(tmp_path, 8080),
        "client": lambda: configs.nginx_client_side(tmp_path, HOP_C, _tls(pki, "client")),
        "server": lambda: configs.nginx_server_side(tmp_path, HOP_S, _tls(pki, "server")),
    }[which]()
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    proc = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(conf)],
                          capture_output=True, check=False, text=True, timeout=30)
    # -t also binds the listen addresses, which may not exist here: only the syntax matters.
    assert "syntax is ok" in proc.stderr, proc.stderr


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
@pytest.mark.parametrize("side", ["client", "server"])
def test_haproxy_accepts_the_configs(tmp_path: Path, side: str):
    pki = generate(tmp_path / "pki")
    text = (configs.haproxy_client_side(HOP_C, _tls(pki, "client")) if side == "client"
            else configs.haproxy_server_side(HOP_S, _tls(pki, "server")))
    conf = tmp_path / "h.cfg"
    conf.write_text(text)
    proc = subprocess.run(["haproxy", "-c", "-f", str(conf)], capture_output=True, check=False, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
