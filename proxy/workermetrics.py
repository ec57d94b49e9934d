"""Merging the workers' Prometheus expositions into one (pure: text in, text out).

With `concurrency` N > 1 every worker counts its own traffic; the parent's
/metrics scrapes each worker and adds the series up, so a scraper sees one
proxy. Counters, histograms and ordinary gauges (open connections) are summed
per (sample name, labels); `*_created` samples and `*_timestamp_seconds`
gauges (certificate expiry) keep the smallest value: the earliest is the one
that matters.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class ExpositionError(ValueError):
    """A worker's /metrics answer is not Prometheus text (the message says why)."""


def _keeps_minimum(family: Metric, sample_name: str) -> bool:
    return sample_name.endswith("_created") or (family.type == "gauge" and family.name.endswith("_timestamp_seconds"))


def merge(texts: Iterable[str]) -> list[Metric]:
    """The families of every text, samples with the same name and labels combined."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[SampleKey, float]] = {}
    for text in texts:
        try:
            parsed = list(text_string_to_metric_families(text))
        except (ValueError, IndexError) as e:
            raise ExpositionError(f"unparsable exposition: {e}") from None
        for fam in parsed:
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                values[fam.name] = {}
            acc = values[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(s.labels.items()))
                old = acc.get(key)
                if old is None:
                    acc[key] = s.value
                elif _keeps_minimum(fam, s.name):
                    acc[key] = min(old, s.value)
                else:
                    acc[key] = old + s.value
    for name, fam in families.items():
        fam.samples = [Sample(n, dict(labels), v) for (n, labels), v in values[name].items()]
    return list(families.values())


def total(text: str, sample_name: str, **match: str) -> float:
    """Sum of the samples called `sample_name` whose labels include `match` (0 if none)."""
    out = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in match.items()):
                out += s.value
    return out


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    return generate_latest(registry)
