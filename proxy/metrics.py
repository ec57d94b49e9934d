"""Prometheus metrics with Linkerd's names, one explicit registry per process.

The hot path only adds to plain ints: per connection-leg `TcpMetrics` and per
target `RouteMetrics` objects are looked up once (per connection / target)
and a custom collector turns them into samples at scrape time. Rare events
(handshake failures, identity, discovery) use ordinary prometheus-client
metrics.

Handshake failures on the inbound side are counted in
`inbound_tls_handshake_failure_total{reason}` (reason: `no_client_cert`,
`unknown_ca`, `timeout`, `no_identity`, `other`).
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

LATENCY_BUCKETS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000,
                   5000, 10000, 20000, 30000, 40000, 50000)
BASE = ("direction", "authority", "tls", "client_id", "server_id", "dst_service", "dst_namespace",
        "namespace", "pod")
TCP = BASE + ("peer",)
"""TCP metrics are per leg: peer="src" (the accepted connection) or "dst" (the proxy's own)."""
MAX_SERIES = 10000


class TcpMetrics:
    __slots__ = ("labels", "open_total", "open_conns", "read_bytes", "write_bytes", "closes")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.open_total = 0
        self.open_conns = 0
        self.read_bytes = 0
        self.write_bytes = 0
        self.closes: dict[str, int] = {}

    def opened(self) -> None:
        self.open_total += 1
        self.open_conns += 1

    def closed(self, errno: str = "") -> None:
        self.open_conns -= 1
        self.closes[errno] = self.closes.get(errno, 0) + 1


class StatusStats:
    __slots__ = ("count", "sum", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)


class RouteMetrics:
    __slots__ = ("labels", "requests", "by_status")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.requests = 0
        self.by_status: dict[int, StatusStats] = {}

    def response(self, status: int, latency_ms: float, grpc_status: int | None = None) -> None:
        """`grpc_status`: a gRPC response's status (classified by it, labelled `grpc_status_code`)."""
        key: int | tuple[int, int] = status if grpc_status is None else (status, grpc_status)
        s = self.by_status.get(key)  # type: ignore[call-overload]
        if s is None:
            s = self.by_status[key] = StatusStats()  # type: ignore[index]
        s.count += 1
        s.sum += latency_ms
        s.buckets[bisect_left(LATENCY_BUCKETS, latency_ms)] += 1


def classify(status: int) -> str:
    return "failure" if status >= 500 or status == 0 else "success"


class ProxyMetrics:
    def __init__(self, namespace: str, pod: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.namespace = namespace
        self.pod = pod
        r = self.registry
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
        self.retries = Counter("retry_total", "Requests retried by route policy", ("authority", "namespace", "pod"),
                               registry=r)
        self.retries_skipped = Counter("retry_skipped_total", "Retries not made",
                                       ("authority", "reason", "namespace", "pod"), registry=r)
        self.overflows = Counter("cluster_overflow_total",
                                 "Requests or connections refused by a DestinationRule connection pool",
                                 ("authority", "kind", "namespace", "pod"), registry=r)
        self._tcp: dict[tuple[str, ...], TcpMetrics] = {}
        self._routes: dict[tuple[str, ...], RouteMetrics] = {}
        r.register(_HotCollector(self))

    def base(self, direction: str, *, authority: str = "", tls: bool = False, client_id: str = "",
             server_id: str = "", dst_service: str = "", dst_namespace: str = "") -> tuple[str, ...]:
        return (direction, authority, "true" if tls else "false", client_id, server_id, dst_service,
                dst_namespace, self.namespace, self.pod)

    def tcp(self, labels: tuple[str, ...]) -> TcpMetrics:
        m = self._tcp.get(labels)
        if m is None:
            if len(self._tcp) >= MAX_SERIES:
                self._tcp = {k: v for k, v in self._tcp.items() if v.open_conns > 0}
            m = self._tcp[labels] = TcpMetrics(labels)
        return m

    def route(self, labels: tuple[str, ...]) -> RouteMetrics:
        m = self._routes.get(labels)
        if m is None:
            if len(self._routes) >= MAX_SERIES:
                self._routes.clear()
            m = self._routes[labels] = RouteMetrics(labels)
        return m

    def retry(self, authority: str, skipped: str = "") -> None:
        """A retry made (`skipped` empty) or not made for a reason ("budget")."""
        if skipped:
            self.retries_skipped.labels(authority, skipped, self.namespace, self.pod).inc()
        else:
            self.retries.labels(authority, self.namespace, self.pod).inc()

    def overflow(self, authority: str, kind: str) -> None:
        """A connection-pool refusal: kind "requests" (http2MaxRequests), "pending"
        (http1MaxPendingRequests) or "connections" (maxConnections, opaque TCP)."""
        self.overflows.labels(authority, kind, self.namespace, self.pod).inc()

    def handshake_failed(self, reason: str) -> None:
        self.handshake_failures.labels(reason, self.namespace, self.pod).inc()


class _HotCollector:
    """Turns the int counters into samples at scrape time."""

    def __init__(self, m: ProxyMetrics) -> None:
        self._m = m

    def collect(self) -> Iterator[Metric]:
        routes = list(self._m._routes.values())  # noqa: SLF001
        tcps = list(self._m._tcp.values())  # noqa: SLF001
        req = CounterMetricFamily("request_total", "HTTP requests", labels=BASE)
        resp = CounterMetricFamily("response_total", "HTTP responses",
                                   labels=BASE + ("status_code", "classification"))
        lat = HistogramMetricFamily("response_latency_ms", "Time to response headers (ms)",
                                    labels=BASE + ("status_code",))
        for r in routes:
            req.add_metric(r.labels, r.requests)
            hist: dict[str, StatusStats] = {}
            for status, s in list(r.by_status.items()):
                if type(status) is tuple:  # gRPC: (HTTP status, grpc-status)
                    code = str(status[0])
                    labels = dict(zip(BASE + ("status_code", "classification"),
                                      r.labels + (code, "success" if status[1] == 0 else "failure")))
                    labels["grpc_status_code"] = str(status[1])
                    resp.samples.append(Sample("response_total", labels, s.count))
                else:
                    code = str(status)
                    resp.add_metric(r.labels + (code, classify(status)), s.count)
                h = hist.get(code)
                if h is None:
                    hist[code] = h = StatusStats()
                h.count += s.count
                h.sum += s.sum
                h.buckets = [a + b for a, b in zip(h.buckets, s.buckets, strict=True)]
            for code, s in hist.items():
                cumulative, buckets = 0, []
                for bound, n in zip(LATENCY_BUCKETS, s.buckets[:-1], strict=True):
                    cumulative += n
                    buckets.append((str(bound), cumulative))
                buckets.append(("+Inf", s.count))
                lat.add_metric(r.labels + (code,), buckets, s.sum)
        yield from (req, resp, lat)
        opened = CounterMetricFamily("tcp_open_total", "TCP connections opened", labels=TCP)
        conns = GaugeMetricFamily("tcp_open_connections", "Open TCP connections", labels=TCP)
        closed = CounterMetricFamily("tcp_close_total", "TCP connections closed", labels=TCP + ("errno",))
        read = CounterMetricFamily("tcp_read_bytes_total", "Bytes read from peers", labels=TCP)
        written = CounterMetricFamily("tcp_write_bytes_total", "Bytes written to peers", labels=TCP)
        for t in tcps:
            opened.add_metric(t.labels, t.open_total)
            conns.add_metric(t.labels, t.open_conns)
            read.add_metric(t.labels, t.read_bytes)
            written.add_metric(t.labels, t.write_bytes)
            for errno, n in list(t.closes.items()):
                closed.add_metric(t.labels + (errno,), n)
        yield from (opened, conns, closed, read, written)
