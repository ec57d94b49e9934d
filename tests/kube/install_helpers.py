"""Helpers of the install/check tests: run the real `meshlet` CLI, apply its output like
`kubectl apply` (server-side apply through kubernetes_asyncio's dynamic client), stand in for
the missing controller-manager by writing Deployment status, and clean cluster-scoped objects."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

COMPONENTS = ("destination", "identity", "injector")


class ApplyFailed(AssertionError):
    """The API server refused an applied document (the message is the server's)."""


def meshlet(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """The `meshlet` CLI as a process (what a user runs)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MESHLET_MODE")}
    return subprocess.run([sys.executable, "-m", "meshlet.controller.cli.main", *args],
                          check=False, capture_output=True, text=True, timeout=timeout, env=env)


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def apply(api: kclient.ApiClient, docs: list[dict[str, Any]], field_manager: str = "meshlet-test") -> None:
    """Server-side apply each document in order, as `kubectl apply --server-side` would."""
    dyn = await DynamicClient(api)
    for doc in docs:
        resource = await dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        # Strict, as kubectl: an unknown or duplicate field in our manifests is an error, not silently dropped
        result = await dyn.server_side_apply(resource, body=doc, field_manager=field_manager, force_conflicts=True,
                                             query_params=[("fieldValidation", "Strict")])
        # the dynamic client hands some failures back as a Status object instead of raising
        if getattr(result, "kind", None) == "Status" and getattr(result, "status", None) == "Failure":
            raise ApplyFailed(f"{doc['kind']} {doc['metadata']['name']}: {result.code} {result.message}")


def check_json(*args: str) -> tuple[int, dict[str, Any]]:
    """`meshlet check ... -o json`: exit code and the parsed report."""
    proc = meshlet("check", *args, "-o", "json")
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"meshlet check printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


def results(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(category, description) -> check entry."""
    return {(c["categoryName"], ch["description"]): ch for c in report["categories"] for ch in c["checks"]}


def failures(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: v for k, v in results(report).items() if v["result"] == "error"}


async def mark_available(api: kclient.ApiClient, namespace: str, names: list[str]) -> None:
    """Write what the deployment controller would (no controller-manager runs here)."""
    apps = kclient.AppsV1Api(api)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in names:
        dep = await apps.read_namespaced_deployment(name, namespace)
        status = {"observedGeneration": dep.metadata.generation, "replicas": 1, "updatedReplicas": 1,
                  "readyReplicas": 1, "availableReplicas": 1,
                  "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                  "message": "set by the test (no controller-manager)",
                                  "lastUpdateTime": now, "lastTransitionTime": now}]}
        await apps.patch_namespaced_deployment_status(name, namespace, {"status": status})


async def delete_cluster_objects(api: kclient.ApiClient, namespace: str) -> None:
    """The cluster-scoped objects of an install into `namespace` (namespaces themselves are never deleted here)."""
    rbac = kclient.RbacAuthorizationV1Api(api)
    reg = kclient.AdmissionregistrationV1Api(api)
    calls = [lambda: reg.delete_mutating_webhook_configuration(f"meshlet-{namespace}-proxy-injector")]
    for c in COMPONENTS:
        calls.append(lambda c=c: rbac.delete_cluster_role_binding(f"meshlet-{namespace}-{c}"))
        calls.append(lambda c=c: rbac.delete_cluster_role(f"meshlet-{namespace}-{c}"))
    for call in calls:
        try:
            await call()
        except ApiException as e:
            if e.status != 404:
                raise


def helm_env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}


def helm(helm_bin: Path, home: Path, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin), *args], check=False, capture_output=True, text=True, timeout=timeout, env=helm_env(home))
