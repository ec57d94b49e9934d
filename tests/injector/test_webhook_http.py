"""webhook.py over real HTTPS on loopback (namespace labels from a stand-in; the API-server path is
tests/kube/test_injector_webhook.py) and the serving certificate's hot reload."""
from __future__ import annotations

import asyncio
import base64
import json
import ssl

import aiohttp
import pytest
from meshlet.injector.config import InjectorConfig
from meshlet.injector.kube import NamespaceInfo
from meshlet.injector.tlsreload import CertError, CertReloader
from meshlet.injector.webhook import (
    Injector,
    Metrics,
    admin_app,
    start_site,
    webhook_app,
)

from .certs import write_self_signed
from .test_review import pod, review


class Namespaces:
    def __init__(self, labels, fail=False, annotations=None):
        self.labels, self.fail, self.asked = labels, fail, []
        self.annotations = annotations or {}

    async def get(self, name):
        self.asked.append(name)
        if self.fail:
            raise ConnectionError("API server unreachable")
        return NamespaceInfo(self.labels.get(name, {}), self.annotations.get(name, {}))


class Publisher:
    def __init__(self):
        self.namespaces = []

    async def ensure(self, namespace):
        self.namespaces.append(namespace)


@pytest.fixture
async def served(tmp_path):
    cert, key, pem = write_self_signed(tmp_path / "tls")
    tls = CertReloader(cert, key)
    namespaces = Namespaces({"demo": {"istio-injection": "enabled"}})
    publisher = Publisher()
    metrics = Metrics.create()
    injector = Injector(InjectorConfig(proxy_image="img:1"), namespaces, publisher, metrics)
    site = await start_site(webhook_app(injector), "127.0.0.1", 0, ssl_context=tls.context)
    admin = await start_site(admin_app(ready=lambda: True, registry=metrics.registry), "127.0.0.1", 0)
    port = site.addresses[0][1]
    admin_port = admin.addresses[0][1]
    client_ctx = ssl.create_default_context(cadata=pem.decode())
    try:
        yield {"url": f"https://127.0.0.1:{port}/inject", "admin": f"http://127.0.0.1:{admin_port}",
               "ssl": client_ctx, "namespaces": namespaces, "publisher": publisher, "tls": tls,
               "dir": tmp_path, "port": port}
    finally:
        await site.cleanup()
        await admin.cleanup()


async def post(s, body: bytes):
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(s["url"], data=body, ssl=s["ssl"], headers=headers) as r:
        return r.status, await r.text()


async def test_injects_over_https_and_echoes_uid(served):
    status, text = await post(served, review(uid="abc-123"))
    assert status == 200
    resp = json.loads(text)["response"]
    assert resp["uid"] == "abc-123" and resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    assert any(o["path"] == "/spec/initContainers" for o in ops)
    assert served["namespaces"].asked == ["demo"]
    assert served["publisher"].namespaces == ["demo"]


async def test_dry_run_does_not_publish(served):
    status, text = await post(served, review(dryRun=True))
    assert status == 200 and "patch" in json.loads(text)["response"]
    assert served["publisher"].namespaces == []


async def test_malformed_review_is_a_400_naming_the_problem(served):
    status, text = await post(served, b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}')
    assert status == 400 and "request must be an object" in text
    status, text = await post(served, b"\xff\xfe")
    assert status == 400 and "not JSON" in text


async def test_api_failure_allows_without_patch(served):
    served["namespaces"].fail = True
    status, text = await post(served, review(uid="u-7"))
    resp = json.loads(text)["response"]
    assert status == 200 and resp == {"uid": "u-7", "allowed": True,
                                      "warnings": [resp["warnings"][0]]} and "unreachable" in resp["warnings"][0]


async def test_opt_out_and_metrics(served):
    await post(served, review(pod(annotations={"sidecar.istio.io/inject": "false"})))
    await post(served, review())
    await post(served, b"nope")
    async with aiohttp.ClientSession() as http:
        async with http.get(served["admin"] + "/metrics") as r:
            metrics = await r.text()
        async with http.get(served["admin"] + "/ready") as r:
            assert r.status == 200
    assert 'meshlet_injector_reviews_total{result="injected"} 1.0' in metrics
    assert 'meshlet_injector_reviews_total{result="skipped"} 1.0' in metrics
    assert 'meshlet_injector_reviews_total{result="malformed"} 1.0' in metrics


async def _peer_cert(port: int, ctx: ssl.SSLContext) -> bytes:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return der


async def test_serving_certificate_hot_reload(served):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    first = await _peer_cert(served["port"], ctx)
    tls: CertReloader = served["tls"]
    assert tls.check() is False
    # a half-written pair is refused and the old certificate keeps serving
    (served["dir"] / "tls" / "tls.crt").write_text("garbage")
    assert tls.check() is False
    assert await _peer_cert(served["port"], ctx) == first
    write_self_signed(served["dir"] / "tls", cn="rotated")
    assert tls.check() is True
    second = await _peer_cert(served["port"], ctx)
    assert second != first and tls.reloads == 1


def test_unloadable_certificate_is_a_named_error(tmp_path):
    (tmp_path / "c").write_text("x")
    (tmp_path / "k").write_text("y")
    with pytest.raises(CertError, match="serving certificate"):
        CertReloader(tmp_path / "c", tmp_path / "k")


class FailingPublisher:
    async def ensure(self, namespace):
        raise PermissionError("configmaps is forbidden")


async def test_publish_failure_still_injects_and_warns(tmp_path):
    cert, key, pem = write_self_signed(tmp_path / "tls")
    tls = CertReloader(cert, key)
    metrics = Metrics.create()
    injector = Injector(InjectorConfig(proxy_image="img:1"), Namespaces({"demo": {"istio-injection": "enabled"}}),
                        FailingPublisher(), metrics)
    site = await start_site(webhook_app(injector), "127.0.0.1", 0, ssl_context=tls.context)
    try:
        s = {"url": f"https://127.0.0.1:{site.addresses[0][1]}/inject",
             "ssl": ssl.create_default_context(cadata=pem.decode())}
        status, text = await post(s, review(uid="w-1"))
        resp = json.loads(text)["response"]
        assert status == 200 and resp["allowed"] is True and "patch" in resp
        assert "trust roots not published into namespace demo" in resp["warnings"][0]
        assert "configmaps is forbidden" in resp["warnings"][0]
        assert metrics.registry.get_sample_value("meshlet_injector_trust_roots_publish_failures_total") == 1
    finally:
        await site.cleanup()


class HangingNamespaces:
    async def get(self, name):
        await asyncio.Event().wait()


async def test_a_hanging_api_call_is_answered_in_time(tmp_path, monkeypatch):
    """The review's API work is bounded (REVIEW_TIMEOUT, shortened here): the pod goes through uninjected
    instead of the API server timing the webhook out."""
    from meshlet.injector import webhook

    monkeypatch.setattr(webhook, "REVIEW_TIMEOUT", 0.5)
    cert, key, pem = write_self_signed(tmp_path / "tls")
    tls = CertReloader(cert, key)
    injector = Injector(InjectorConfig(proxy_image="img:1"), HangingNamespaces(), None, Metrics.create())
    site = await start_site(webhook_app(injector), "127.0.0.1", 0, ssl_context=tls.context)
    try:
        s = {"url": f"https://127.0.0.1:{site.addresses[0][1]}/inject",
             "ssl": ssl.create_default_context(cadata=pem.decode())}
        status, text = await asyncio.wait_for(post(s, review(uid="slow")), 30)
        resp = json.loads(text)["response"]
        assert status == 200 and resp["allowed"] is True and "patch" not in resp
        assert "TimeoutError" in resp["warnings"][0]
    finally:
        await site.cleanup()
