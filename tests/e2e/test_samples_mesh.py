"""httpbin and emojivoto on a real local mesh, and `meshlet proxy-config` against real proxies.

One mesh per module (its own state dir, bridge and ranges): httpbin v1/v2 and
emojivoto's four deployments, all meshed. gRPC between web and emoji/voting
crosses two proxies with mTLS (carried as opaque TCP for now).
"""
from __future__ import annotations

import json
import shlex
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from meshlet.e2e.apps.emojivoto import EMOJIVOTO_DIR
from meshlet.e2e.apps.emojivoto import NAMESPACE as EMOJIVOTO
from meshlet.e2e.apps.httpbin import HTTPBIN_DIR
from meshlet.e2e.apps.httpbin import NAMESPACE as HTTPBIN
from meshlet.e2e.pods import PodInfo
from meshlet.e2e.scenarios.harness import (
    UP_TIMEOUT,
    mesh_unavailable_reason,
    new_local_target,
    poll,
    stop_local,
)
from meshlet.e2e.target import LocalMeshTarget, wait_for_pods

pytestmark = [pytest.mark.root, pytest.mark.slow]
MARK = "~~meshlet-status~~"  # (a -w format starting with @ would name a file)


@dataclass
class SamplesMesh:
    target: LocalMeshTarget
    httpbin: list[PodInfo]
    emojivoto: list[PodInfo]

    def pod(self, app: str, version: str | None = None) -> PodInfo:
        for p in self.httpbin + self.emojivoto:
            if p.labels.get("app") == app and (version is None or p.labels.get("version") == version):
                return p
        raise AssertionError(f"no pod app={app} version={version}")

    def curl(self, pod: PodInfo, url: str, count: int = 1) -> list[tuple[int, str]]:
        """`count` GETs from inside `pod`: [(status or 0 when curl failed, body)]."""
        script = (f"for i in $(seq {int(count)}); do curl -s -m 10 -w '{MARK}%{{http_code}}{MARK}' "
                  f"{shlex.quote(url)}; done")
        proc = self.target.exec(pod.namespace, pod.name, ["sh", "-c", script], timeout=30 + 2 * count)
        parts = proc.stdout.split(MARK)
        return [(int(code) if code.isdigit() else 0, body) for body, code in zip(parts[0::2], parts[1::2])]

    def proxy_config(self, *args: str) -> tuple[int, str]:
        proc = self.target.run(["proxy-config", *args], check=False, timeout=60)
        return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def samples() -> Iterator[SamplesMesh]:
    reason = mesh_unavailable_reason()
    if reason:
        pytest.skip(reason)
    target = new_local_target()
    try:
        target.run(["up", "-f", str(HTTPBIN_DIR), "-f", str(EMOJIVOTO_DIR), "--timeout", str(int(UP_TIMEOUT))])
        httpbin = wait_for_pods(target, HTTPBIN, expect=2, timeout=UP_TIMEOUT)
        emojivoto = wait_for_pods(target, EMOJIVOTO, expect=4, timeout=UP_TIMEOUT)
        yield SamplesMesh(target, httpbin, emojivoto)
    finally:
        stop_local(target)


def test_samples_come_up_meshed(samples: SamplesMesh) -> None:
    assert sorted(p.labels.get("version", "") for p in samples.httpbin) == ["v1", "v2"]
    assert sorted(p.labels["app"] for p in samples.emojivoto) == ["emoji-svc", "vote-bot", "voting-svc", "web-svc"]
    assert all(p.meshed for p in samples.httpbin + samples.emojivoto)


def test_httpbin_versions_answer_through_the_mesh(samples: SamplesMesh) -> None:
    client = samples.pod("vote-bot")
    seen: set[str] = set()

    def both() -> bool | None:
        for status, body in samples.curl(client, "http://httpbin.httpbin:8000/stats", 10):
            if status == 200:
                seen.add(json.loads(body)["version"])
        return True if seen == {"v1", "v2"} else None

    poll(both, timeout=90, what="httpbin v1 and v2 through the mesh")
    ((status, body),) = samples.curl(client, "http://httpbin.httpbin:8000/status/418")
    assert status == 418
    ((status, body),) = samples.curl(client, "http://httpbin.httpbin:8000/headers")
    assert status == 200 and json.loads(body)["headers"]["Host"] == "httpbin.httpbin:8000"


def test_emojivoto_grpc_through_two_proxies(samples: SamplesMesh) -> None:
    client = samples.pod("vote-bot")

    def listed() -> list | None:
        ((status, body),) = samples.curl(client, "http://web-svc/api/list")
        return json.loads(body) if status == 200 else None

    emoji = poll(listed, timeout=90, what="web-svc /api/list (web -> emoji over gRPC)")
    assert {"shortcode": ":doughnut:", "unicode": "\U0001F369"} in emoji
    ((status, body),) = samples.curl(client, "http://web-svc/api/vote?choice=:doughnut:")
    assert status == 500 and json.loads(body) == {"error": "voting: grpc UNKNOWN: ERROR"}
    ((status, _),) = samples.curl(client, "http://web-svc/api/vote?choice=:floppy_disk:")
    assert status == 200
    ((status, body),) = samples.curl(client, "http://web-svc/api/leaderboard")
    assert status == 200 and ":floppy_disk:" in {r["shortcode"] for r in json.loads(body)}
    # the emoji pod's proxy saw mTLS connections from web's proxy
    emoji_pod = samples.pod("emoji-svc")
    url = f"http://{samples.target.pod_address(emoji_pod, 15090)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        metrics = resp.read().decode()
    assert any(line.startswith("tcp_open_total") and 'direction="inbound"' in line and 'tls="true"' in line
               and "/sa/web" in line for line in metrics.splitlines()), "no mTLS inbound connection from web"


def test_vote_bot_votes(samples: SamplesMesh) -> None:
    client = samples.pod("vote-bot")

    def votes() -> int | None:
        ((status, body),) = samples.curl(client, "http://web-svc/api/leaderboard")
        total = sum(r["votes"] for r in json.loads(body)) if status == 200 else 0
        return total if total >= 3 else None

    assert poll(votes, timeout=60, what="votes cast by vote-bot") >= 3


def test_proxy_config_endpoints_and_secret(samples: SamplesMesh) -> None:
    client = samples.pod("vote-bot")
    poll(lambda: True if samples.curl(client, "http://web-svc/api/list")[0][0] == 200 else None, timeout=60,
         what="traffic through web")
    code, out = samples.proxy_config("deploy/web", "-n", EMOJIVOTO, "endpoints")
    assert code == 0, out
    assert out.splitlines()[0].split() == ["TARGET", "ENDPOINT", "IDENTITY", "LABELS", "HEALTH"]
    emoji_ip = samples.pod("emoji-svc").ip
    assert any(f"{emoji_ip}:8080" in line and "spiffe://cluster.local/ns/emojivoto/sa/emoji" in line
               for line in out.splitlines()), out
    code, out = samples.proxy_config("deploy/web", "-n", EMOJIVOTO, "secret")
    assert code == 0, out
    row = out.splitlines()[1].split()
    assert row[:2] == ["spiffe://cluster.local/ns/emojivoto/sa/web", "VALID"], out
    code, out = samples.proxy_config("deploy/web", "-n", EMOJIVOTO, "secret", "-o", "json")
    assert code == 0 and json.loads(out)["uri"] == "spiffe://cluster.local/ns/emojivoto/sa/web"


def test_proxy_config_routes_and_clusters(samples: SamplesMesh) -> None:
    web = samples.pod("web-svc")
    code, out = samples.proxy_config(web.name, "-n", EMOJIVOTO, "routes")
    assert code == 0, out
    assert out.splitlines()[0].split()[:3] == ["TARGET", "ROUTE", "MATCH"]
    code, out = samples.proxy_config(web.name, "-n", EMOJIVOTO, "clusters", "-o", "json")
    assert code == 0, out
    clusters = json.loads(out)
    assert any(v["endpoints"] >= 1 for v in clusters.values()), clusters


def test_proxy_config_errors(samples: SamplesMesh) -> None:
    code, out = samples.proxy_config("no-such-pod", "-n", EMOJIVOTO, "routes")
    assert code == 1 and "pod 'no-such-pod' not found in namespace 'emojivoto'" in out
