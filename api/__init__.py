"""meshlet.api: the compact proxy <-> control-plane gRPC API.

The .proto files live in api/proto; betterproto2 + grpclib code generated from
them lives in api/gen (run `make proto`). Import the messages from here:

    from meshlet.api import destination_pb as dst, identity_pb as ident
"""
from .gen.meshlet.destination import v1 as destination_pb
from .gen.meshlet.identity import v1 as identity_pb

__all__ = ["destination_pb", "identity_pb"]
