"""Client TLS contexts of DestinationRule `tls.mode` SIMPLE / MUTUAL (TLS origination to a
server outside the mesh: its CA, our client certificate, no SPIFFE check)."""
from __future__ import annotations

import ssl

from .errors import ConnectError
from .profile import ClientTls, TlsMode


class Originations:
    """One `SSLContext` per distinct `ClientTls` settings (bounded cache)."""

    def __init__(self, limit: int = 256) -> None:
        self._ctx: dict[ClientTls, ssl.SSLContext] = {}
        self.limit = limit

    def get(self, tls: ClientTls) -> ssl.SSLContext:
        """The context (ConnectError naming the problem when the files are unusable)."""
        ctx = self._ctx.get(tls)
        if ctx is None:
            try:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                if tls.ca_certificates:
                    ctx.load_verify_locations(cafile=tls.ca_certificates)
                    ctx.verify_mode = ssl.CERT_REQUIRED
                else:
                    ctx.verify_mode = ssl.CERT_NONE
                if tls.mode is TlsMode.MUTUAL:
                    ctx.load_cert_chain(tls.client_certificate, tls.private_key or None)
            except (OSError, ssl.SSLError) as e:
                raise ConnectError(f"TLS origination settings unusable: {e}") from None
            if len(self._ctx) > self.limit:
                self._ctx.clear()
            self._ctx[tls] = ctx
        return ctx
