"""`python -m meshlet.proxy`: the data-plane proxy (configured by MESHLET_PROXY_* variables)."""
import os
import sys

# betterproto2 imports pydantic when it is installed, only for pydantic dataclasses,
# which the generated API does not use: ~0.25 s of start time and ~4 MB of RSS saved.
sys.modules.setdefault("pydantic", None)  # type: ignore[arg-type]

# concurrency other than 1 (ProxyConfig) or a worker of such a proxy: workers.py; else the
# single-process proxy, exactly as before
if os.environ.get("MESHLET_PROXY_WORKER") or os.environ.get("MESHLET_PROXY_CONCURRENCY", "").strip() not in ("", "1"):
    from meshlet.proxy.workers import main
else:
    from meshlet.proxy.app import main

sys.exit(main())
