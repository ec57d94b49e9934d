"""A flaky gRPC upstream and an HTTP-driven gRPC caller, to prove retries on `unavailable` through the mesh.

`flaky` (`python -m meshlet.e2e.apps.flakygrpc server`) serves emojivoto's EmojiService and
fails every other `ListAll` with UNAVAILABLE; `caller` (`... client`) answers
`GET /call?n=N` by making N sequential `ListAll` calls to `FLAKY_ADDR` over gRPC and
returning `{"ok": k, "errors": {"UNAVAILABLE": m}}`. Manifests: `flakygrpc.yaml`
(namespace `grpcflaky`, meshed).
"""
from pathlib import Path

FLAKYGRPC_DIR = Path(__file__).resolve().parent
NAMESPACE = "grpcflaky"
