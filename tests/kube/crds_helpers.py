"""Install meshlet's CRDs into the test API server once per process and wait until they serve."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException

from meshlet.controller.model.crd import render_crds

_installed: set[str] = set()
"""API server URLs this process already installed the CRDs into (the API server is per session)."""


def established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


async def ensure_crds(api: kclient.ApiClient, timeout: float = 120.0) -> list[Any]:
    """Create (or replace) every CRD and wait until each is Established; the CRD objects read back."""
    ext = kclient.ApiextensionsV1Api(api)
    crds = render_crds()
    if api.configuration.host not in _installed:
        for body in crds:
            name = body["metadata"]["name"]
            try:
                await ext.create_custom_resource_definition(body)
            except ApiException as e:
                if e.status != 409:
                    raise
                current = await ext.read_custom_resource_definition(name)
                body = {**body, "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version}}
                await ext.replace_custom_resource_definition(name, body)
        _installed.add(api.configuration.host)
    deadline = time.monotonic() + timeout
    out = []
    for body in crds:
        name = body["metadata"]["name"]
        while True:
            crd = await ext.read_custom_resource_definition(name)
            if established(crd):
                out.append(crd)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} not Established within {timeout:.0f} s: {crd.status}")
            await asyncio.sleep(0.2)
    return out


async def wait_served(api: kclient.ApiClient, group: str, version: str, plural: str, timeout: float = 60.0) -> None:
    """Until discovery lists `plural` in group/version (Established can precede the handler by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resources = await kclient.CustomObjectsApi(api).get_api_resources(group, version)
            if any(r.name == plural for r in resources.resources):
                return
        except ApiException as e:
            if e.status != 404:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{plural}.{group}/{version} not served within {timeout:.0f} s")
        await asyncio.sleep(0.2)
