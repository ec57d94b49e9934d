"""Real path: two proxies in network namespaces with iptables capture, the real identity
service, a Destination stand-in, real apps. Order matters only for the last test
(it stops the control plane)."""
from __future__ import annotations

import json
import re
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy_mesh import CLIENT_ID, NS, SERVER_ID, Mesh
from proxy_netns import http_get, wait_for

pytestmark = pytest.mark.root


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        body, _, value = line.rpartition(" ")
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def curl(pod, *args: str) -> tuple[int, dict[str, str], str]:  # noqa: ANN001
    r = pod.run("curl", "-s", "-m", "10", "-D", "/dev/stderr", *args)
    # text mode turns CRLF into LF; with -D the last head block is the final response's
    head = r.stderr.strip("\n").split("\n\n")[-1]
    lines = head.split("\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if ":" in h)}
    return status, headers, r.stdout


def test_request_through_both_proxies_over_mtls(mesh: Mesh) -> None:
    status, headers, body = curl(mesh.a, f"http://{mesh.b.ip}:8080/hello?x=1")
    assert status == 200, body
    assert json.loads(body)["path"] == "/hello?x=1"
    server = mesh.metrics(mesh.b)
    assert metric(server, "request_total", direction="inbound", tls="true", client_id=CLIENT_ID) >= 1
    assert metric(server, "response_total", direction="inbound", tls="true", client_id=CLIENT_ID,
                  status_code="200", classification="success") >= 1
    client = mesh.metrics(mesh.a)
    assert metric(client, "request_total", direction="outbound", tls="true", server_id=SERVER_ID,
                  dst_service="server", dst_namespace=NS) >= 1
    assert metric(client, "response_latency_ms_count", direction="outbound", status_code="200") >= 1
    assert metric(client, "tcp_open_total", direction="outbound", peer="dst", tls="true") >= 1


def test_post_bodies_chunked_and_streamed_responses(mesh: Mesh) -> None:
    payload = "0123456789abcdef" * 20_000
    (mesh.tmp / "payload").write_text(payload)
    r = mesh.a.run("curl", "-s", "-m", "10", "--data-binary", f"@{mesh.tmp / 'payload'}",
                   f"http://{mesh.b.ip}:8080/echo")
    assert r.stdout == payload
    r = mesh.a.run("curl", "-s", "-m", "10", "-H", "Transfer-Encoding: chunked", "--data-binary", "hello chunks",
                   f"http://{mesh.b.ip}:8080/echo")
    assert r.stdout == "hello chunks"
    r = mesh.a.run("curl", "-s", "-m", "10", f"http://{mesh.b.ip}:8080/stream/50")
    assert r.stdout.splitlines() == [f"chunk {i}" for i in range(50)]
    status, headers, body = curl(mesh.a, "-I", f"http://{mesh.b.ip}:8080/hello")
    assert status == 200 and "\"app\"" not in body  # HEAD: headers only
    status, _, _ = curl(mesh.a, f"http://{mesh.b.ip}:8080/status/204")
    assert status == 204
    status, _, _ = curl(mesh.a, f"http://{mesh.b.ip}:8080/status/503")
    assert status == 503
    assert metric(mesh.metrics(mesh.a), "response_total", direction="outbound", status_code="503",
                  classification="failure") >= 1


def test_keepalive_and_pipelining(mesh: Mesh) -> None:
    code = f"""
import socket
s = socket.create_connection(("{mesh.b.ip}", 8080), timeout=10)
req = b"GET /p HTTP/1.1\\r\\nHost: {mesh.b.ip}:8080\\r\\n\\r\\n"
s.sendall(req * 3 + b"GET /last HTTP/1.1\\r\\nHost: {mesh.b.ip}:8080\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.count(b"HTTP/1.1 200"), data.count(b'"/last"'))
"""
    r = mesh.a.python(code)
    assert r.stdout.split() == ["4", "1"], r.stderr


def test_websocket_upgrade(mesh: Mesh) -> None:
    code = f"""
import asyncio, aiohttp
async def main():
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect("http://{mesh.b.ip}:8080/ws") as ws:
            for i in range(3):
                await ws.send_str(f"m{{i}}")
                print((await ws.receive()).data)
asyncio.run(main())
"""
    r = mesh.a.python(code)
    assert r.stdout.split() == ["b:m0", "b:m1", "b:m2"], r.stderr


def test_unmeshed_client_reaches_server_in_plaintext(mesh: Mesh) -> None:
    status, _, body = curl(mesh.c, f"http://{mesh.b.ip}:8080/plain")
    assert status == 200 and json.loads(body)["path"] == "/plain"
    assert metric(mesh.metrics(mesh.b), "request_total", direction="inbound", tls="false") >= 1


def test_passthrough_to_a_non_mesh_destination(mesh: Mesh) -> None:
    # c is not a mesh service: the destination answers no_endpoints(exists=False)
    status, _, body = curl(mesh.a, f"http://{mesh.c.ip}:8080/out")
    assert status == 200 and json.loads(body)["app"] == "c"
    assert metric(mesh.metrics(mesh.a), "request_total", direction="outbound", tls="false",
                  authority=f"{mesh.c.ip}:8080") >= 1


def test_resolution_by_host_header_to_a_plaintext_endpoint(mesh: Mesh) -> None:
    # any address: the Host header picks the target, its endpoint (c) has no identity
    status, _, body = curl(mesh.a, "-H", f"Host: plain.{NS}.svc.cluster.local:8080", "http://198.18.251.1:8080/h")
    assert status == 200 and json.loads(body)["app"] == "c"
    assert metric(mesh.metrics(mesh.a), "request_total", direction="outbound", tls="false",
                  authority=f"plain.{NS}.svc.cluster.local:8080", dst_service="plain") >= 1


def test_requests_are_balanced_over_mtls_and_plaintext_endpoints(mesh: Mesh) -> None:
    # concurrent requests: peak-EWMA P2C weighs pending requests, so both endpoints get some
    # (sequential ones would all go to the faster endpoint, as intended)
    code = f"""
import concurrent.futures, http.client, json
def worker(_):
    seen = []
    conn = http.client.HTTPConnection("198.18.251.1", 8080, timeout=30)
    for _ in range(10):
        conn.request("GET", "/", headers={{"Host": "both.{NS}.svc.cluster.local:8080"}})
        resp = conn.getresponse()
        seen.append(json.loads(resp.read())["app"] if resp.status == 200 else str(resp.status))
    return seen
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    print(" ".join(sorted(set(a for seen in pool.map(worker, range(16)) for a in seen))))
"""
    r = mesh.a.python(code, timeout=120)
    assert r.stdout.split() == ["b", "c"], r.stdout + r.stderr
    text = mesh.metrics(mesh.a)
    assert metric(text, "request_total", dst_service="both", tls="true", server_id=SERVER_ID) >= 1
    assert metric(text, "request_total", dst_service="both", tls="false") >= 1


def test_a_pod_calling_its_own_service_address(mesh: Mesh) -> None:
    # b's app calls b's address: the endpoint is b itself, reached directly on the app's port
    status, _, body = curl(mesh.b, f"http://{mesh.b.ip}:8080/self")
    assert status == 200 and json.loads(body)["app"] == "b"
    assert metric(mesh.metrics(mesh.b), "request_total", direction="outbound", authority=f"{mesh.b.ip}:8080",
                  dst_service="server") >= 1


def test_proxy_errors(mesh: Mesh) -> None:
    # nothing listens on b:9999 → 502 from the server side proxy
    status, headers, _ = curl(mesh.a, f"http://{mesh.b.ip}:9999/")
    assert status == 502 and "meshlet-proxy-error" in headers
    # a service without endpoints → 503 from the client side proxy
    status, headers, _ = curl(mesh.a, "-H", f"Host: empty.{NS}.svc.cluster.local", f"http://{mesh.b.ip}:80/")
    assert status == 503 and "no ready endpoints" in headers["meshlet-proxy-error"]


@pytest.mark.parametrize("via", ["outbound", "inbound"])
def test_malformed_request_gets_400_and_proxy_keeps_serving(mesh: Mesh, via: str) -> None:
    pod = mesh.a if via == "outbound" else mesh.c
    code = f"""
import socket
s = socket.create_connection(("{mesh.b.ip}", 8080), timeout=10)
s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nBad Header Line\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.split(b"\\r\\n")[0].decode())
print(b"meshlet-proxy-error" in data)
"""
    r = pod.python(code)
    assert r.stdout.splitlines() == ["HTTP/1.1 400 Bad Request", "True"], r.stdout + r.stderr
    status, _, _ = curl(pod, f"http://{mesh.b.ip}:8080/after-garbage")
    assert status == 200


def test_opaque_server_speaks_first(mesh: Mesh) -> None:
    code = f"""
import socket
s = socket.create_connection(("{mesh.b.ip}", 2525), timeout=10)
f = s.makefile("rwb")
print(f.readline().decode().strip())
f.write(b"ping\\r\\n"); f.flush()
print(f.readline().decode().strip())
"""
    r = mesh.a.python(code)
    assert r.stdout.splitlines() == ["220 banner from b", "echo ping"], r.stderr
    assert metric(mesh.metrics(mesh.b), "tcp_open_total", direction="inbound", tls="true",
                  client_id=CLIENT_ID, peer="src") >= 1


def _foreign_client_context(tmp) -> ssl.SSLContext:  # noqa: ANN001
    """A client certificate for the right SPIFFE id, issued by another CA."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil root")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(name).public_key(key.public_key())
            .serial_number(2).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(CLIENT_ID)]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp / "evil.crt").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (tmp / "evil.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(tmp / "evil.crt", tmp / "evil.key")
    return ctx


def test_peer_with_certificate_from_another_ca_is_refused(mesh: Mesh) -> None:
    before = metric(mesh.metrics(mesh.b), "inbound_tls_handshake_failure_total")
    ctx = _foreign_client_context(mesh.tmp)
    raw = socket.create_connection((mesh.b.ip, 8080), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            if not tls.recv(100):
                raise ConnectionResetError("closed")
    wait_for(lambda: metric(mesh.metrics(mesh.b), "inbound_tls_handshake_failure_total") > before,
             "handshake failure counted", timeout=20)
    log = (mesh.tmp / "proxy-b.log").read_text()
    assert "inbound.tls_handshake_failed" in log
    assert http_get(f"http://{mesh.b.ip}:15000/ready")[0] == 200


def test_config_dump_and_admin(mesh: Mesh) -> None:
    status, body = http_get(f"http://{mesh.a.ip}:15000/config_dump")
    assert status == 200
    dump = json.loads(body)
    assert dump["identity"]["uri"] == CLIENT_ID
    assert dump["identity"]["cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert dump["identity"]["not_after"] > time.time()
    assert len(dump["identity"]["trust_anchor_fingerprint"]) == 64
    dests = dump["destinations"]
    assert dests[f"{mesh.b.ip}:8080"]["endpoints"][0]["identity"] == SERVER_ID
    assert http_get(f"http://{mesh.a.ip}:15000/live")[0] == 200
    assert http_get(f"http://{mesh.a.ip}:15021/healthz/ready")[0] == 200
    status, body = http_get(f"http://{mesh.a.ip}:15090/stats/prometheus")
    assert status == 200 and "request_total" in body


def test_traffic_keeps_flowing_with_the_control_plane_down(mesh: Mesh) -> None:
    assert curl(mesh.a, f"http://{mesh.b.ip}:8080/before")[0] == 200
    mesh.stop_destination()
    try:
        for i in range(3):  # new connections each time, same cached target
            status, _, body = curl(mesh.a, f"http://{mesh.b.ip}:8080/down{i}")
            assert status == 200, body
        r = mesh.a.python(f"""
import socket
s = socket.create_connection(("{mesh.b.ip}", 2525), timeout=10)
print(s.makefile("rb").readline().decode().strip())
""")
        assert r.stdout.strip() == "220 banner from b"
        assert metric(mesh.metrics(mesh.b), "request_total", direction="inbound", tls="true",
                      client_id=CLIENT_ID) >= 3
    finally:
        mesh.start_destination()
    # the streams come back by themselves (backoff with jitter, at most 10 s apart)
    wait_for(lambda: metric(mesh.metrics(mesh.a), "destination_stream_reconnect_total") >= 1,
             "discovery streams re-established", timeout=60)
    status, _, _ = curl(mesh.a, "-H", f"Host: plain.{NS}.svc.cluster.local:8080", "http://198.18.251.1:8080/")
    assert status == 200


def test_shutdown_drains_in_flight_requests(mesh: Mesh) -> None:
    """Last: stops the client proxy. POST /shutdown lets the in-flight request finish."""
    import subprocess
    import urllib.request

    proxy = mesh.a.procs[-1]
    labels = {"direction": "inbound", "authority": f"{mesh.b.ip}:8080", "client_id": CLIENT_ID}
    before = metric(mesh.metrics(mesh.b), "request_total", **labels)
    slow = subprocess.Popen(["ip", "netns", "exec", mesh.a.netns, "curl", "-s", "-m", "20",
                             f"http://{mesh.b.ip}:8080/sleep/3000"], stdout=subprocess.PIPE, text=True)
    # in flight: the server side has forwarded it to the app (which sleeps 3 s before answering)
    wait_for(lambda: metric(mesh.metrics(mesh.b), "request_total", **labels) > before, "slow request in flight")
    req = urllib.request.Request(f"http://{mesh.a.ip}:15000/shutdown", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    out, _ = slow.communicate(timeout=30)
    assert out.strip() == "slept from b"
    assert proxy.wait(timeout=30) == 0
