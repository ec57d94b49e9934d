"""Run every analyzer over a snapshot; load manifests for analysis document by document.

`analyze(snapshot, namespaces)` is pure: the CLI builds the snapshot from the
store and the files, and renders the messages.
"""
from __future__ import annotations

from collections.abc import Iterable

from meshlet.controller.analyze import messages as msg
from meshlet.controller.analyze.analyzers import ANALYZERS, Analyzer
from meshlet.controller.analyze.messages import Message, Origin
from meshlet.controller.analyze.snapshot import Snapshot
from meshlet.controller.model import (
    DEFAULT_REGISTRY,
    ConversionError,
    Resource,
    default_resource,
)
from meshlet.controller.model.loader import expand_paths, parse_documents


def analyze(snap: Snapshot, namespaces: set[str] | None = None,
            analyzers: Iterable[Analyzer] = ANALYZERS) -> list[Message]:
    """Messages about resources in `namespaces` (None: all), most severe first."""
    out: dict[str, Message] = {}  # one message per line: a host referenced by three routes is one problem
    for analyzer in analyzers:
        for m in analyzer(snap):
            if namespaces is None or not m.origin.namespace or m.origin.namespace in namespaces:
                out.setdefault(m.line(), m)
    return sorted(out.values(), key=msg.sort_key)


def load_for_analysis(paths: list[str], namespace: str | None) -> tuple[list[Resource], list[Message]]:
    """Resources of every valid document; each invalid one is an IST0106 message instead of an abort."""
    sources, problems = expand_paths(paths)
    messages = [Message(msg.SCHEMA_VALIDATION_ERROR, Origin("File", "", p.source), (p.message,)) for p in problems]
    resources: list[Resource] = []
    for src in sources:
        docs, parse_problems = parse_documents(src.text, src.name)
        messages += [Message(msg.SCHEMA_VALIDATION_ERROR, Origin("File", "", src.name), (str(p),))
                     for p in parse_problems]
        for index, data in docs:
            warnings: list[str] = []
            try:
                resource = DEFAULT_REGISTRY.decode(data, warnings=warnings)
            except ConversionError as e:
                messages += [Message(msg.SCHEMA_VALIDATION_ERROR, _doc_origin(data, src.name, index, namespace),
                                     (str(issue),), issue.path) for issue in e.issues]
                continue
            if namespace is not None and resource.namespaced and resource.metadata.namespace is None:
                resource = resource.with_meta(namespace=namespace)
            resource = default_resource(resource)
            messages += [Message(msg.SPELLING_ACCEPTED, _origin(resource), (w,)) for w in warnings]
            resources.append(resource)
    return resources, messages


def _origin(r: Resource) -> Origin:
    return Origin(r.kind, (r.metadata.namespace or "") if r.namespaced else "", r.name)


def _doc_origin(data: object, source: str, index: int, namespace: str | None) -> Origin:
    """Best-effort identity of a document that failed to decode."""
    if isinstance(data, dict):
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        kind, name = data.get("kind"), meta.get("name") if isinstance(meta, dict) else None
        if isinstance(kind, str) and isinstance(name, str):
            ns = meta.get("namespace") if isinstance(meta, dict) else None
            return Origin(kind, str(ns or namespace or "default"), name)
        if isinstance(kind, str):
            return Origin(kind, "", f"{source} document {index}")
    return Origin("File", "", f"{source} document {index}")
