"""The HTTP client under `ScavioClient`: httpx's API over aiohttp, keeping no cookies.

httpx's own transport (httpcore) costs the server more CPU per upstream call
than anything else it does (docs/benchmarks.md has the figures): among other
things it polls every idle pooled connection's socket before each request.
`httpx-aiohttp` keeps the `httpx` API the client is written against and
sends through aiohttp's C-accelerated HTTP/1.1 client, whose pool learns of
a closed connection from the event loop instead.

TLS is httpx's: `httpx.create_ssl_context` with certificate verification
against certifi's CAs (or the given `verify`), and no environment variables
(SSL_CERT_FILE...) read, as the client's `trust_env=False` asks.

One correction of httpx-aiohttp 0.2.0: it reports every
`aiohttp.ClientConnectionError` (a refused connection, a failed DNS lookup,
a dropped connection, a bad certificate) as `httpx.ConnectTimeout`, because
its broad entry matches first; the client would then say the upstream timed
out when it could not be reached. `_Transport` raises `httpx.ConnectError`
for those instead (a body cut short is already `httpx.ReadError`).

`UpstreamHttp` is httpx's `AsyncClient` without a cookie jar: the key
authenticates every call, so a cookie the upstream (or a proxy in front of
it) sets is never sent back, and httpx does not parse each response's
headers for cookies as its jar would.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class _NoCookies(httpx.Cookies):
    """A cookie jar that stays empty: what a response sets is dropped unread."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class UpstreamHttp(httpx.AsyncClient):
    """httpx's client for the upstream, whose `cookies` are always empty (module docstring)."""

    def __init__(self, **options: Any) -> None:
        self._no_cookies = _NoCookies()
        super().__init__(**options)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        self._no_cookies = _NoCookies()  # what is set is not kept either


def upstream_transport(verify: ssl.SSLContext | bool = True) -> httpx.AsyncBaseTransport:
    """The Scavio client's transport: aiohttp under httpx, httpx's TLS defaults.

    `verify`: an `ssl.SSLContext` trusting other CAs (tests use a throwaway CA).
    """
    return _Transport(verify=verify, trust_env=False)


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with connection failures reported as ConnectError."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _connection_errors():
            return await super().handle_async_request(request)


@contextlib.contextmanager
def _connection_errors() -> Iterator[None]:
    try:
        yield
    except httpx.ConnectTimeout as exc:
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
            cause, aiohttp.ServerTimeoutError
        ):
            raise httpx.ConnectError(str(exc)) from cause
        raise
