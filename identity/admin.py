"""Admin HTTP server of a control-plane process: /live, /ready, /metrics.

Moved to `meshlet.controller.serve` (shared by every control-plane process);
these names stay importable from here.
"""
from __future__ import annotations

from meshlet.controller.serve import admin_app, split_hostport, start_admin

__all__ = ["admin_app", "split_hostport", "start_admin"]
