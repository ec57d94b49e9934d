"""Domain address sets -> `destination_pb.Update` messages (the only place that sees protobuf)."""
from __future__ import annotations

from meshlet.api import destination_pb as pb

from .address import Address, AddressSet

POD_LABELS = ("app", "version")
"""Pod labels copied into each endpoint's metric labels when present."""


def server_name(namespace: str, service_account: str, trust_domain: str) -> str:
    """SNI for a meshed endpoint, Linkerd style: <sa>.<ns>.serviceaccount.identity.<td>."""
    return f"{service_account}.{namespace}.serviceaccount.identity.{trust_domain}"


def weighted_addr(address: Address) -> pb.WeightedAddr:
    labels = {"pod": address.pod, "namespace": address.namespace, "serviceaccount": address.service_account}
    labels.update({k: address.labels[k] for k in POD_LABELS if k in address.labels})
    tls = None
    if address.identity is not None:
        trust_domain = address.identity.removeprefix("spiffe://").partition("/")[0]
        tls = pb.TlsIdentity(
            uri=address.identity,
            server_name=server_name(address.namespace, address.service_account, trust_domain),
        )
    return pb.WeightedAddr(
        addr=pb.TcpAddress(ip=address.ip, port=address.port),
        weight=address.weight,
        metric_labels={k: v for k, v in labels.items() if v},
        tls_identity=tls,
        labels=dict(address.labels),
    )


def add_update(addresses: AddressSet) -> pb.Update:
    return pb.Update(
        add=pb.WeightedAddrSet(
            addrs=[weighted_addr(a) for a in addresses.sorted()],
            metric_labels=dict(addresses.labels),
        )
    )


def remove_update(addresses: AddressSet) -> pb.Update:
    return pb.Update(remove=pb.AddrSet(addrs=[pb.TcpAddress(ip=a.ip, port=a.port) for a in addresses.sorted()]))


def no_endpoints_update(exists: bool, blocked: bool = False) -> pb.Update:
    return pb.Update(no_endpoints=pb.NoEndpoints(exists=exists, blocked=blocked))
