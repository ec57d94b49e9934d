"""The generated betterproto2 + grpclib code for emojivoto (`python e2e/apps/emojivoto/generate.py`)."""
from .gen.emojivoto import v1 as emojivoto_pb

__all__ = ["emojivoto_pb"]
