"""The local runtime: pods as network namespaces (see docs/architecture.md, "Local mode").

Public entry points:
- `python -m meshlet.controller.local --state-dir DIR` (started by `meshlet up`)
- `meshlet.controller.local.runtime.Runtime` (the reconciler)
- `meshlet.controller.local.state` (runtime.json, pids, clean-up used by up/down/check)
"""
