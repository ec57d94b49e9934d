"""Prometheus metrics with Linkerd's names, one explicit registry per process.

Label children are looked up once per connection/target and cached in small
objects (`TcpMetrics`, `RouteMetrics`), so the per-request cost is a couple of
`inc()`/`observe()` calls.

Handshake failures on the inbound side are counted in
`inbound_tls_handshake_failure_total{reason}` (reason: `no_client_cert`,
`unknown_ca`, `timeout`, `other`).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000,
                   5000, 10000, 20000, 30000, 40000, 50000)
BASE = ("direction", "authority", "tls", "client_id", "server_id", "dst_service", "dst_namespace",
        "namespace", "pod")
TCP = BASE + ("peer",)
"""TCP metrics are per leg: peer="src" (the accepted connection) or "dst" (the proxy's own)."""


class ProxyMetrics:
    def __init__(self, namespace: str, pod: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.namespace = namespace
        self.pod = pod
        r = self.registry
        self.request_total = Counter("request_total", "HTTP requests", BASE, registry=r)
        self.response_total = Counter("response_total", "HTTP responses",
                                      BASE + ("status_code", "classification"), registry=r)
        self.response_latency = Histogram("response_latency_ms", "Time to response headers (ms)",
                                          BASE + ("status_code",), buckets=LATENCY_BUCKETS, registry=r)
        self.tcp_open_total = Counter("tcp_open_total", "TCP connections opened", TCP, registry=r)
        self.tcp_open_connections = Gauge("tcp_open_connections", "Open TCP connections", TCP, registry=r)
        self.tcp_close_total = Counter("tcp_close_total", "TCP connections closed", TCP + ("errno",),
                                       registry=r)
        self.tcp_read_bytes = Counter("tcp_read_bytes_total", "Bytes read from peers", TCP, registry=r)
        self.tcp_write_bytes = Counter("tcp_write_bytes_total", "Bytes written to peers", TCP, registry=r)
        self.handshake_failures = Counter("inbound_tls_handshake_failure_total",
                                          "Inbound TLS handshakes refused", ("reason", "namespace", "pod"),
                                          registry=r)
        self.identity_cert_expiry = Gauge("identity_cert_expiration_timestamp_seconds",
                                          "Expiry of the proxy's certificate", ("namespace", "pod"),
                                          registry=r)
        self.identity_certify_failures = Counter("identity_certify_failure_total", "Failed Certify calls",
                                                 ("namespace", "pod"), registry=r)
        self.destination_reconnects = Counter("destination_stream_reconnect_total",
                                              "Destination.Get streams re-established", ("namespace", "pod"),
                                              registry=r)
        self._tcp: dict[tuple[str, ...], TcpMetrics] = {}
        self._routes: dict[tuple[str, ...], RouteMetrics] = {}

    def base(self, direction: str, *, authority: str = "", tls: bool = False, client_id: str = "",
             server_id: str = "", dst_service: str = "", dst_namespace: str = "") -> tuple[str, ...]:
        return (direction, authority, "true" if tls else "false", client_id, server_id, dst_service,
                dst_namespace, self.namespace, self.pod)

    def tcp(self, labels: tuple[str, ...]) -> "TcpMetrics":
        m = self._tcp.get(labels)
        if m is None:
            if len(self._tcp) > 10000:
                self._tcp.clear()
            m = self._tcp[labels] = TcpMetrics(self, labels)
        return m

    def route(self, labels: tuple[str, ...]) -> "RouteMetrics":
        m = self._routes.get(labels)
        if m is None:
            if len(self._routes) > 10000:
                self._routes.clear()
            m = self._routes[labels] = RouteMetrics(self, labels)
        return m

    def handshake_failed(self, reason: str) -> None:
        self.handshake_failures.labels(reason, self.namespace, self.pod).inc()


class TcpMetrics:
    __slots__ = ("open_total", "open_conns", "read", "write", "_close", "_m", "_labels")

    def __init__(self, m: ProxyMetrics, labels: tuple[str, ...]) -> None:
        self._m = m
        self._labels = labels
        self.open_total = m.tcp_open_total.labels(*labels)
        self.open_conns = m.tcp_open_connections.labels(*labels)
        self.read = m.tcp_read_bytes.labels(*labels)
        self.write = m.tcp_write_bytes.labels(*labels)
        self._close: dict[str, Counter] = {}

    def opened(self) -> None:
        self.open_total.inc()
        self.open_conns.inc()

    def closed(self, errno: str = "") -> None:
        self.open_conns.dec()
        c = self._close.get(errno)
        if c is None:
            c = self._close[errno] = self._m.tcp_close_total.labels(*self._labels, errno)
        c.inc()


class RouteMetrics:
    __slots__ = ("requests", "_by_status", "_m", "_labels")

    def __init__(self, m: ProxyMetrics, labels: tuple[str, ...]) -> None:
        self._m = m
        self._labels = labels
        self.requests = m.request_total.labels(*labels)
        self._by_status: dict[int, tuple[Counter, Histogram]] = {}

    def response(self, status: int, latency_ms: float) -> None:
        pair = self._by_status.get(status)
        if pair is None:
            s = str(status)
            cls = "failure" if status >= 500 or status == 0 else "success"
            pair = self._by_status[status] = (
                self._m.response_total.labels(*self._labels, s, cls),
                self._m.response_latency.labels(*self._labels, s),
            )
        pair[0].inc()
        pair[1].observe(latency_ms)
