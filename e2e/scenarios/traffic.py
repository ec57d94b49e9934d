"""What the traffic scenarios share: curl batches from inside pods, httpbin's counters, applying rules for a while.

`Clients.calls` runs one curl process in a pod for a whole batch (URL
globbing: one keep-alive connection, or `parallel` connections at once) and
parses status, time and `x-version` per request. `Applied` applies YAML text
(the namespace filled in where missing) and deletes it again, or puts back
what it replaced. `seed` reads one of the seed's examples, optionally
re-aimed at another host.
"""
from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
import yaml
from meshlet.e2e.pods import PodInfo
from meshlet.e2e.target import MeshTarget
from meshlet.e2e.seeds import SEED_EXAMPLES

SEEDS = SEED_EXAMPLES
MARK = "~~meshlet~~"  # separates curl's -w output from bodies (a -w format starting with @ names a file)
HTTPBIN_URL = "http://httpbin.httpbin:8000"
APPLY_WAIT = 30.0
"""Seconds to wait for an applied rule to show (the target is one second; busy CI machines are slower)."""


@dataclass(frozen=True)
class Reply:
    status: int
    """0 when curl itself failed (timeout, reset)."""
    body: str
    seconds: float
    version: str
    """The `x-version` response header (httpbin), empty when absent."""


def versions(replies: list[Reply]) -> Counter[str]:
    return Counter(r.version or f"status {r.status}" for r in replies)


@dataclass
class Clients:
    """Calls from inside the mesh's pods, and httpbin's own view (from the test host)."""

    target: MeshTarget
    pods: list[PodInfo] = field(default_factory=list)

    def pod(self, app: str, version: str | None = None, namespace: str | None = None) -> PodInfo:
        for p in self.pods:
            if p.labels.get("app") == app and version in (None, p.labels.get("version")) \
                    and namespace in (None, p.namespace):
                return p
        raise AssertionError(f"no pod app={app} version={version} namespace={namespace}")

    def calls(self, pod: PodInfo, url: str, *headers: str, count: int = 1, max_time: float = 15.0,
              parallel: int = 0, method: str = "GET") -> list[Reply]:
        """`count` requests of `url` from inside `pod`: one curl, one connection (or `parallel` at once)."""
        argv = ["curl", "-s", "-m", f"{max_time:g}", "-X", method]
        for h in headers:
            argv += ["-H", h]
        argv += ["-w", f"{MARK}%{{http_code}} %{{time_total}} %header{{x-version}}{MARK}"]
        if parallel:
            argv += ["--parallel", "--parallel-immediate", "--parallel-max", str(parallel)]
        if count > 1:
            argv.append(f"{url}{'&' if '?' in url else '?'}n=[1-{int(count)}]")
        else:
            argv += ["-g", url]
        proc = self.target.exec(pod.namespace, pod.name, argv, timeout=60 + count * max_time / max(1, parallel))
        parts = proc.stdout.split(MARK)
        replies = []
        for body, meta in zip(parts[0::2], parts[1::2]):
            code, seconds, *version = meta.split(" ", 2)
            replies.append(Reply(int(code) if code.isdigit() else 0, body, float(seconds or 0),
                                 (version[0] if version else "").strip()))
        return replies

    def call(self, pod: PodInfo, url: str, *headers: str, max_time: float = 15.0) -> Reply:
        replies = self.calls(pod, url, *headers, max_time=max_time)
        return replies[0] if replies else Reply(0, "", 0.0, "")

    def httpbin(self, version: str, path: str = "/stats", method: str = "GET") -> Any:
        """JSON from the httpbin pod of `version`, asked directly from the test host (the pod's inbound side)."""
        pod = self.pod("httpbin", version)
        req = urllib.request.Request(f"http://{self.target.pod_address(pod, 8000)}{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def seed(name: str, **replace: str) -> str:
    """A seed example's text, with `old=new` text replacements (to aim it at a sample's host)."""
    path = SEEDS / name
    if not path.exists():
        pytest.skip(f"seed example {path} not found (set MESHLET_SEED_EXAMPLES)")
    text = path.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


class Applied:
    """Resources applied from YAML text (namespace filled in when missing) for a `with` block.

    On exit they are deleted, or, with `restore`, that YAML is applied instead
    (to put back a resource the block changed).
    """

    def __init__(self, target: MeshTarget, text: str, namespace: str | None, restore: str | None = None) -> None:
        self.target = target
        self.namespace = namespace
        self.docs = self._docs(text)
        self.restore = self._docs(restore) if restore else None

    def _docs(self, text: str) -> list[dict]:
        docs = [d for d in yaml.safe_load_all(text) if d]
        for doc in docs:
            meta = doc.setdefault("metadata", {})
            if self.namespace is not None:  # None: cluster-scoped kinds (MeshConfig)
                meta.setdefault("namespace", self.namespace)
        return docs

    def _apply(self, docs: list[dict]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="meshlet-scenario-", delete=False) as f:
            yaml.safe_dump_all(docs, f)
        try:
            self.target.apply(Path(f.name))
        finally:
            os.unlink(f.name)

    def __enter__(self) -> Self:
        self._apply(self.docs)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.restore is not None:
            self._apply(self.restore)
            return
        for doc in reversed(self.docs):
            meta = doc["metadata"]
            self.target.delete(doc["kind"].lower(), meta.get("namespace") or "default", meta["name"])
