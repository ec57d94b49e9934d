"""The webhook's serving certificate, reloaded when its files change.

One `ssl.SSLContext` serves every connection; `CertReloader.check()` compares the
files' (mtime, size, inode) with the last load and, on a change, loads the new pair
into the same context: later handshakes present the new certificate, open
connections are untouched. A pair that does not load (half-written, key not
matching) is logged and the last good one keeps serving; the next check retries.
Kubernetes updates a mounted Secret by swapping a symlink, which changes the
stat of the resolved path, so polling `os.stat` (following links) sees it.
"""
from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import structlog

log = structlog.get_logger(component="meshlet.injector.tls")


class CertError(ValueError):
    """The certificate or key cannot be loaded (names the files)."""


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


class CertReloader:
    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamps: tuple[tuple[int, int, int], ...] = ()
        self.reloads = 0
        self._load()

    def _load(self) -> None:
        try:
            stamps = (_stamp(self.cert), _stamp(self.key))
            self.context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as e:
            raise CertError(f"serving certificate {self.cert} / key {self.key}: {e}") from None
        self._stamps = stamps

    def check(self) -> bool:
        """Reload when the files changed; True when a new pair was loaded."""
        try:
            stamps = (_stamp(self.cert), _stamp(self.key))
        except OSError as e:
            log.warning("tls.stat_failed", error=str(e))
            return False
        if stamps == self._stamps:
            return False
        try:
            self._load()
        except CertError as e:
            log.error("tls.reload_failed", error=str(e), keeping="previous certificate")
            return False
        self.reloads += 1
        log.info("tls.reloaded", cert=str(self.cert))
        return True

    async def watch(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
