"""Admin debug views (on the admin port, next to /ready and /metrics): what a caller would be told.

    GET /debug/profile?path=reviews:9080&ns=bookinfo[&pod=productpage-0]   -> the DestinationProfile (JSON)
    GET /debug/endpoints?path=reviews:9080&ns=bookinfo[&pod=...]           -> endpoints / no_endpoints (JSON)

Computed on demand from the same indexes as the streams; nothing is subscribed.
"""
from __future__ import annotations

import json

from aiohttp import web
from meshlet.api import destination_pb as pb

from .address import AddressSet
from .errors import InvalidPath
from .lookup import CallerRef
from .profile_watcher import ProfileWatcher
from .targets import Target, parse_path
from .watcher import BLOCKED, EndpointsWatcher


def add_debug_routes(app: web.Application, watcher: EndpointsWatcher, profiles: ProfileWatcher,
                     cluster_domain: str = "cluster.local") -> None:
    def parse(request: web.Request) -> tuple[Target, CallerRef, str]:
        path, ns = request.query.get("path", ""), request.query.get("ns", "")
        try:
            target = parse_path(path, ns, cluster_domain=cluster_domain)
        except InvalidPath as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None
        return target, CallerRef(ns, request.query.get("pod", "")), path

    async def profile(request: web.Request) -> web.Response:
        target, caller, path = parse(request)
        built: pb.DestinationProfile = profiles.compute(target, caller, path)
        return web.json_response(built.to_dict())

    async def endpoints(request: web.Request) -> web.Response:
        target, caller, _ = parse(request)
        state = watcher.resolve(target, caller)
        if isinstance(state, AddressSet):
            body = {"exists": True, "labels": dict(state.labels), "endpoints": [
                {"ip": a.ip, "port": a.port, "pod": a.pod, "namespace": a.namespace, "identity": a.identity,
                 "labels": dict(a.labels)} for a in state.sorted()]}
        else:
            body = {"exists": False, "blocked": state is BLOCKED, "endpoints": []}
        return web.Response(text=json.dumps(body, indent=1) + "\n", content_type="application/json")

    app.router.add_get("/debug/profile", profile)
    app.router.add_get("/debug/endpoints", endpoints)
