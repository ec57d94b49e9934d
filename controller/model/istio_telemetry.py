"""telemetry.istio.io Telemetry (v1, v1alpha1).

The seed writes `useRequestIdForTracingSampling`; Istio's field is
`useRequestIdForTraceSampling` (accepted with a warning).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.convert import yfield
from meshlet.controller.model.istio_common import (
    PolicyTargetReference,
    WorkloadSelector,
    check_duration,
    check_percent,
)
from meshlet.controller.model.meta import Resource

MetricName = Literal["ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
                     "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES",
                     "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"]
WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]


@dataclass(frozen=True)
class ProviderRef:
    name: str


@dataclass(frozen=True)
class TracingSelector:
    mode: WorkloadMode | None = None


@dataclass(frozen=True)
class Tracing:
    match: TracingSelector | None = None
    providers: tuple[ProviderRef, ...] = ()
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, Any] = field(default_factory=dict)
    use_request_id_for_trace_sampling: bool | None = yfield(warn_aliases=("useRequestIdForTracingSampling",),
                                                            default=None)

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.random_sampling_percentage is not None:
            problem = check_percent(self.random_sampling_percentage, "randomSamplingPercentage")
            if problem:
                yield "randomSamplingPercentage", problem


@dataclass(frozen=True)
class MetricSelector:
    metric: MetricName | None = None
    custom_metric: str | None = None
    mode: WorkloadMode | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.metric is not None and self.custom_metric is not None:
            yield "customMetric", "only one of metric and customMetric may be set"


@dataclass(frozen=True)
class TagOverride:
    operation: Literal["UPSERT", "REMOVE"] = "UPSERT"
    value: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.operation == "UPSERT" and self.value is None:
            yield "value", "operation UPSERT needs a value"
        if self.operation == "REMOVE" and self.value is not None:
            yield "value", "operation REMOVE takes no value"


@dataclass(frozen=True)
class MetricsOverrides:
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    providers: tuple[ProviderRef, ...] = ()
    overrides: tuple[MetricsOverrides, ...] = ()
    reporting_interval: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.reporting_interval is not None:
            problem = check_duration(self.reporting_interval, minimum=0.001)
            if problem:
                yield "reportingInterval", problem


@dataclass(frozen=True)
class AccessLogFilter:
    expression: str


@dataclass(frozen=True)
class AccessLogging:
    match: TracingSelector | None = None
    providers: tuple[ProviderRef, ...] = ()
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


@dataclass(frozen=True)
class TelemetrySpec:
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    tracing: tuple[Tracing, ...] = ()
    metrics: tuple[Metrics, ...] = ()
    access_logging: tuple[AccessLogging, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Telemetry(Resource):
    api_version: ClassVar[str] = "telemetry.istio.io/v1"
    kind: ClassVar[str] = "Telemetry"

    spec: TelemetrySpec = field(default_factory=TelemetrySpec)
    status: Any = None
