"""A Destination stand-in: `python fake_destination.py HOST PORT FIXTURE.json [PROFILES.json]`.

The fixture maps a path to its endpoints:
  {"path": {"exists": true, "labels": {...}, "endpoints": [{"ip", "port", "identity", "pod_labels"}]}}
  {"path": {"blocked": true}}   (not a mesh service, and not allowed: the proxy refuses)
Unknown paths get no_endpoints(exists=False). Streams stay open after the snapshot.

PROFILES.json (optional) maps a path to a `DestinationProfile` in protobuf JSON form
(`{"routes": [...], "trafficPolicy": {...}}`); it is read again when it changes, and every
open GetProfile stream whose entry changed gets the new profile. Without the file,
GetProfile is not implemented (as an older control plane).
"""
import asyncio
import copy
import json
import os
import sys

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from meshlet.api import destination_pb as pb


def profile_from_dict(d: dict) -> pb.DestinationProfile:
    """`from_dict`, except that betterproto2 cannot read the JSON name `consecutive5xxErrors`
    (it looks for `consecutive5_xx_errors`): that one field is set by hand."""
    d = copy.deepcopy(d)

    def pop(tp: dict | None) -> int | None:
        return ((tp or {}).get("outlierDetection") or {}).pop("consecutive5xxErrors", None)

    top = pop(d.get("trafficPolicy"))
    subs = [pop(s.get("trafficPolicy")) for s in d.get("subsets", [])]
    m = pb.DestinationProfile.from_dict(d)
    if top is not None:
        m.traffic_policy.outlier_detection.consecutive_5xx_errors = top
    for s, v in zip(m.subsets, subs):
        if v is not None:
            s.traffic_policy.outlier_detection.consecutive_5xx_errors = v
    return m


class FakeDestination(pb.DestinationBase):
    def __init__(self, fixture: dict, profiles_path: str | None) -> None:
        self.fixture = fixture
        self.profiles_path = profiles_path

    async def get(self, message: pb.GetDestination):
        entry = self.fixture.get(message.path)
        print("get", message.path, "known" if entry else "unknown", flush=True)
        if entry is None:
            yield pb.Update(no_endpoints=pb.NoEndpoints(exists=False))
        elif entry.get("blocked"):
            yield pb.Update(no_endpoints=pb.NoEndpoints(exists=False, blocked=True))
        elif not entry.get("endpoints"):
            yield pb.Update(no_endpoints=pb.NoEndpoints(exists=True))
        else:
            yield pb.Update(add=pb.WeightedAddrSet(
                metric_labels=entry.get("labels", {}),
                addrs=[pb.WeightedAddr(
                    addr=pb.TcpAddress(ip=e["ip"], port=e["port"]), weight=1,
                    tls_identity=pb.TlsIdentity(uri=e["identity"]) if e.get("identity") else None,
                    labels=e.get("pod_labels", {}),
                ) for e in entry["endpoints"]],
            ))
        await asyncio.Event().wait()

    def _profile(self, path: str) -> tuple[float, dict | None]:
        try:
            mtime = os.stat(self.profiles_path).st_mtime
            with open(self.profiles_path) as f:
                return mtime, json.load(f).get(path)
        except (OSError, ValueError):
            return -1.0, None

    async def get_profile(self, message: pb.GetDestination):
        if not self.profiles_path or not os.path.exists(self.profiles_path):
            raise GRPCError(Status.UNIMPLEMENTED, "no profiles here")
        mtime, entry = self._profile(message.path)
        print("get_profile", message.path, "known" if entry else "unknown", flush=True)
        yield profile_from_dict(entry or {})
        while True:
            await asyncio.sleep(0.05)
            try:
                if os.stat(self.profiles_path).st_mtime == mtime:
                    continue
            except OSError:
                continue
            new_mtime, new = self._profile(message.path)
            if new_mtime < 0:
                continue
            mtime = new_mtime
            if new != entry:
                entry = new
                print("get_profile update", message.path, flush=True)
                yield profile_from_dict(entry or {})


async def main(host: str, port: int, path: str, profiles: str | None) -> None:
    with open(path) as f:
        fixture = json.load(f)
    server = Server([FakeDestination(fixture, profiles)])
    await server.start(host, port)
    print("destination ready", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
