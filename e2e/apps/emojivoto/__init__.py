"""emojivoto-like sample app: `web` (HTTP) calling `emoji` and `voting` over gRPC, and a `vote-bot`.

Run each piece with `python -m meshlet.e2e.apps.emojivoto.<emoji|voting|web|vote_bot>`;
manifests in `emojivoto.yaml` (namespace `emojivoto`). The messages and stubs:

    from meshlet.e2e.apps.emojivoto.pb import emojivoto_pb
"""
from pathlib import Path

EMOJIVOTO_DIR = Path(__file__).resolve().parent
NAMESPACE = "emojivoto"
