"""Configuration files of the backend server and the nginx / haproxy sidecar pairs.

Pure text rendering (tested without starting anything). Every server runs one
worker / one thread, like the single-threaded meshlet proxy, with keep-alive on
every hop and TLS 1.3 with mutual authentication between the two sidecars.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BODY = "hello from the meshlet benchmark backend\n"
"""The backend's response body (41 bytes)."""


@dataclass(frozen=True)
class Hop:
    """Where one instance listens and where it forwards to."""

    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    chain: Path
    """Certificate followed by key (haproxy's `crt` format)."""
    ca: Path
    peer_name: str
    """DNS SAN the other side's certificate must carry."""


def _nginx_main(workdir: Path, http_body: str) -> str:
    return f"""\
worker_processes 1;
daemon off;
master_process on;
user root;
pid {workdir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{http_body}}}
"""


FLAKY_PORT = 8081
"""Backend port failing a random 10 % of requests with 503 (retries with a real failure rate)."""
H2_PORT = 8082
"""Backend port speaking h2c (HTTP/2 with prior knowledge, no TLS)."""


def nginx_backend(workdir: Path, port: int) -> str:
    """The server under test: a fixed small body from memory, on every address; the same body on
    FLAKY_PORT with 10 % random 503s, and over h2c on H2_PORT."""
    body = BODY.replace("\n", "\\n")
    return _nginx_main(workdir, f"""\
    split_clients "${{request_id}}" $bench_fail {{ 10% 1; * 0; }}
    server {{
        listen {port} reuseport;
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
    server {{
        listen {FLAKY_PORT} reuseport;
        location / {{
            default_type text/plain;
            if ($bench_fail) {{ return 503 "failed on purpose\\n"; }}
            return 200 "{body}";
        }}
    }}
    server {{
        listen {H2_PORT} http2 reuseport;
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
""")


def nginx_client_side(workdir: Path, hop: Hop, tls: TlsFiles) -> str:
    """Plaintext in from the app, mTLS out to the server-side instance."""
    return _nginx_main(workdir, f"""\
    upstream server_side {{
        server {hop.upstream_host}:{hop.upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {hop.listen_host}:{hop.listen_port};
        location / {{
            proxy_pass https://server_side;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {tls.cert};
            proxy_ssl_certificate_key {tls.key};
            proxy_ssl_trusted_certificate {tls.ca};
            proxy_ssl_verify on;
            proxy_ssl_name {tls.peer_name};
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse on;
        }}
    }}
""")


def nginx_server_side(workdir: Path, hop: Hop, tls: TlsFiles) -> str:
    """mTLS in from the client-side instance (client certificate required), plaintext to the app."""
    return _nginx_main(workdir, f"""\
    upstream app {{
        server {hop.upstream_host}:{hop.upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {hop.listen_host}:{hop.listen_port} ssl;
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_client_certificate {tls.ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
""")


_HAPROXY_COMMON = """\
global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
"""


def haproxy_client_side(hop: Hop, tls: TlsFiles) -> str:
    return _HAPROXY_COMMON + f"""\
frontend app_in
    bind {hop.listen_host}:{hop.listen_port}
    default_backend server_side
backend server_side
    server peer {hop.upstream_host}:{hop.upstream_port} ssl crt {tls.chain} ca-file {tls.ca} verify required verifyhost {tls.peer_name} sni str({tls.peer_name})
"""


def haproxy_server_side(hop: Hop, tls: TlsFiles) -> str:
    return _HAPROXY_COMMON + f"""\
frontend mtls_in
    bind {hop.listen_host}:{hop.listen_port} ssl crt {tls.chain} ca-file {tls.ca} verify required
    default_backend app
backend app
    server app {hop.upstream_host}:{hop.upstream_port}
"""


# --- HTTP/2 (h2c in, h2 over mTLS between the instances, h2c or gRPC to the app) ---------

def nginx_h2_client_side(workdir: Path, hop: Hop, tls: TlsFiles) -> str:
    """h2c (prior knowledge) in; grpc_pass (nginx's HTTP/2 upstream, any request) over mTLS out."""
    return _nginx_main(workdir, f"""\
    upstream server_side {{
        server {hop.upstream_host}:{hop.upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {hop.listen_host}:{hop.listen_port} http2;
        location / {{
            grpc_pass grpcs://server_side;
            grpc_ssl_certificate {tls.cert};
            grpc_ssl_certificate_key {tls.key};
            grpc_ssl_trusted_certificate {tls.ca};
            grpc_ssl_verify on;
            grpc_ssl_name {tls.peer_name};
            grpc_ssl_server_name on;
            grpc_ssl_protocols TLSv1.3;
            grpc_ssl_session_reuse on;
        }}
    }}
""")


def nginx_h2_server_side(workdir: Path, hop: Hop, tls: TlsFiles) -> str:
    """h2 over mTLS in (client certificate required); grpc_pass h2c to the app."""
    return _nginx_main(workdir, f"""\
    upstream app {{
        server {hop.upstream_host}:{hop.upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {hop.listen_host}:{hop.listen_port} ssl http2;
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_client_certificate {tls.ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        location / {{ grpc_pass grpc://app; }}
    }}
""")


def haproxy_h2_client_side(hop: Hop, tls: TlsFiles) -> str:
    return _HAPROXY_COMMON + f"""\
frontend app_in
    bind {hop.listen_host}:{hop.listen_port} proto h2
    default_backend server_side
backend server_side
    server peer {hop.upstream_host}:{hop.upstream_port} ssl alpn h2 crt {tls.chain} ca-file {tls.ca} verify required verifyhost {tls.peer_name} sni str({tls.peer_name})
"""


def haproxy_h2_server_side(hop: Hop, tls: TlsFiles) -> str:
    return _HAPROXY_COMMON + f"""\
frontend mtls_in
    bind {hop.listen_host}:{hop.listen_port} ssl crt {tls.chain} ca-file {tls.ca} verify required alpn h2
    default_backend app
backend app
    server app {hop.upstream_host}:{hop.upstream_port} proto h2
"""
