"""Errors of the destination service (converted to gRPC status in server.py).

    DestinationError
     ├── InvalidPath      malformed `path`            -> INVALID_ARGUMENT
     ├── StreamOverflow   a client did not keep up    -> RESOURCE_EXHAUSTED
     └── InvalidRule      a bad traffic resource      -> resource skipped, logged
"""
from __future__ import annotations


class DestinationError(Exception):
    pass


class InvalidPath(DestinationError):
    pass


class StreamOverflow(DestinationError):
    pass


class InvalidRule(DestinationError):
    """A traffic resource (VirtualService, DestinationRule, ...) holds a value that cannot be translated.

    Never reaches a client: the profile builder skips the resource and logs why.
    """
