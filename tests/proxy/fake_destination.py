"""A Destination stand-in: `python fake_destination.py HOST PORT FIXTURE.json`.

The fixture maps a path to its endpoints:
  {"path": {"exists": true, "labels": {...}, "endpoints": [{"ip", "port", "identity"}]}}
Unknown paths get no_endpoints(exists=False). Streams stay open after the snapshot.
"""
import asyncio
import json
import sys

from grpclib.server import Server

from meshlet.api import destination_pb as pb


class FakeDestination(pb.DestinationBase):
    def __init__(self, fixture: dict) -> None:
        self.fixture = fixture

    async def get(self, message: pb.GetDestination):
        entry = self.fixture.get(message.path)
        print("get", message.path, "known" if entry else "unknown", flush=True)
        if entry is None:
            yield pb.Update(no_endpoints=pb.NoEndpoints(exists=False))
        elif not entry.get("endpoints"):
            yield pb.Update(no_endpoints=pb.NoEndpoints(exists=True))
        else:
            yield pb.Update(add=pb.WeightedAddrSet(
                metric_labels=entry.get("labels", {}),
                addrs=[pb.WeightedAddr(
                    addr=pb.TcpAddress(ip=e["ip"], port=e["port"]), weight=1,
                    tls_identity=pb.TlsIdentity(uri=e["identity"]) if e.get("identity") else None,
                ) for e in entry["endpoints"]],
            ))
        await asyncio.Event().wait()


async def main(host: str, port: int, path: str) -> None:
    with open(path) as f:
        fixture = json.load(f)
    server = Server([FakeDestination(fixture)])
    await server.start(host, port)
    print("destination ready", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
