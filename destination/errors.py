"""Errors of the destination service (converted to gRPC status in server.py).

    DestinationError
     ├── InvalidPath      malformed `path`            -> INVALID_ARGUMENT
     └── StreamOverflow   a client did not keep up    -> RESOURCE_EXHAUSTED
"""
from __future__ import annotations


class DestinationError(Exception):
    pass


class InvalidPath(DestinationError):
    pass


class StreamOverflow(DestinationError):
    pass
