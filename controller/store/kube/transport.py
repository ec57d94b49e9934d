"""Raw JSON requests and watch streams to the API server over a kubernetes_asyncio ApiClient.

kubernetes_asyncio supplies authentication (token, client certificates,
in-cluster token refresh), TLS and the aiohttp session; requests are made
with `_preload_content=False` so bodies stay plain JSON for `translate`
(no generated model classes: they would drop CRD fields). Failures become
`ApiError` (an HTTP status from the server) or `Unreachable` (no answer);
the store turns both into StoreErrors with context.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client as kclient

JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
RETRIES_429 = 5
RETRY_429_MAX = 2.0
MAX_LINE = 64 * 1024 * 1024
"""Largest watch event accepted (one JSON line); the API server's own request limit is far below."""


class TransportError(Exception):
    pass


class Unreachable(TransportError):
    """No HTTP answer (connection refused or dropped, TLS failure, timeout)."""


class ApiError(TransportError):
    """The API server answered with an error status (its Status object, when it sent one)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, Mapping) else {}
        self.reason: str = str(self.body.get("reason") or "")
        self.message: str = str(self.body.get("message") or (body if isinstance(body, str) else "") or
                                f"HTTP {status}")
        details = self.body.get("details")
        causes = details.get("causes") if isinstance(details, Mapping) else None
        self.causes: list[str] = [
            (f"{c.get('field')}: " if c.get("field") else "") + str(c.get("message") or c.get("reason") or "")
            for c in causes or [] if isinstance(c, Mapping)]
        self.retry_after = 1.0
        """Seconds the server asked to wait (Retry-After), for 429 answers."""
        super().__init__(f"{status} {self.reason}: {self.message}".strip())


class Transport:
    def __init__(self, api: kclient.ApiClient, request_timeout: float = 30.0) -> None:
        self.api = api
        self.request_timeout = request_timeout

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    async def _send(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any,
                    content_type: str, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        try:
            return await self.api.call_api(
                path, method, query_params=list((query or {}).items()),
                header_params={"Accept": JSON, "Content-Type": content_type}, body=body,
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise Unreachable(f"{method} {self.host}{path}: {e or type(e).__name__}") from None

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = JSON) -> Any:
        """The decoded JSON answer; ApiError for an error status, Unreachable without an answer.

        429 Too Many Requests (priority and fairness, a CRD's storage still initializing) is retried
        after the server's Retry-After (at most RETRY_429_MAX seconds each, RETRIES_429 times), as client-go does.
        """
        for _ in range(RETRIES_429):
            try:
                return await self._request_once(method, path, query, body, content_type)
            except ApiError as e:
                if e.status != 429:
                    raise
                await asyncio.sleep(min(max(e.retry_after, 0.1), RETRY_429_MAX))
        return await self._request_once(method, path, query, body, content_type)

    async def _request_once(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any,
                            content_type: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        resp = await self._send(method, path, query, body, content_type, timeout)
        try:
            raw = await resp.read()
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise Unreachable(f"{method} {self.host}{path}: {e or type(e).__name__}") from None
        finally:
            resp.release()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")[:300]
        if not 200 <= resp.status < 300:
            error = ApiError(resp.status, data)
            error.retry_after = _seconds(resp.headers.get("Retry-After"))
            raise error
        return data

    async def stream(self, path: str, query: Mapping[str, Any], read_timeout: float) -> AsyncIterator[Any]:
        """Each JSON line of a streaming (watch) answer; ends when the server ends the answer.

        ApiError when the server refuses the watch; Unreachable when the connection fails or no
        byte came for `read_timeout` seconds.
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout, sock_read=read_timeout)
        resp = await self._send("GET", path, query, None, JSON, timeout)
        try:
            if not 200 <= resp.status < 300:
                raw = await resp.read()
                try:
                    data = json.loads(raw) if raw else None
                except ValueError:
                    data = raw.decode(errors="replace")[:300]
                raise ApiError(resp.status, data)
            buffer = b""
            try:
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    if len(buffer) > MAX_LINE:
                        raise Unreachable(f"watch {path}: an event larger than {MAX_LINE} bytes")
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _json_line(path, line)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                raise Unreachable(f"watch {self.host}{path}: {e or type(e).__name__}") from None
            if buffer.strip():
                yield _json_line(path, buffer)
        finally:
            resp.close()

    async def close(self) -> None:
        await self.api.close()


def _json_line(path: str, line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise Unreachable(f"watch {path}: the server sent a line that is not JSON: {line[:120]!r}") from None


def _seconds(value: str | None) -> float:
    try:
        return float(value) if value is not None else 1.0
    except ValueError:
        return 1.0
