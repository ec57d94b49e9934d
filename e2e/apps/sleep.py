"""A do-nothing client pod (Istio's `sleep` sample): tests `meshlet exec` into it.

Run: `python -m meshlet.e2e.apps.sleep`; exits 0 on SIGTERM/SIGINT.
"""
from __future__ import annotations

import signal
import threading


def main() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


if __name__ == "__main__":
    main()
