"""What any token holder could otherwise tie up: requests in progress, and open streams.

`ConcurrencyLayer` is the outermost ASGI layer. It lets at most
`MCP_MAX_CONCURRENT_REQUESTS` HTTP requests be in progress at once (a
request counts from its headers until its response is sent, body reading
included) and answers the others at once with 503, `Retry-After` and a
JSON-RPC error body, as the server's other 503 does, instead of queueing
them. `/healthz` is not counted: a busy replica that still answers is
healthy, and a load balancer should keep sending it what it can take.
uvicorn's own `limit_concurrency` would answer a plain-text 503 and count
idle keep-alive connections too.

`MethodLayer`: the stateless JSON server has nothing to stream and no
session to end, yet the SDK would open a `GET /mcp` event stream that it
never closes, not even when the token expires. So any method but POST on
the MCP endpoint is answered 405 with `Allow: POST` before the SDK (its
authentication included) sees it; the MCP transport spec allows exactly
this for servers that offer no stream.

Both write an audit line for each request they refuse.
"""

from __future__ import annotations

from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_warden.server.audit import AuditLog
from mcp_warden.server.responses import jsonrpc_error, send_json

BUSY_RETRY_AFTER_SECONDS = 1
"""What a 503 for too many requests in progress asks clients to wait."""


class ConcurrencyLayer:
    """At most `limit` HTTP requests in progress; 503 for the others (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, limit: int, audit: AuditLog, exempt: str) -> None:
        self.app = app
        self._limit = limit
        self._audit = audit
        self._exempt = exempt
        self._active = 0  # one event loop: no lock needed between the checks and updates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == self._exempt:
            await self.app(scope, receive, send)
            return
        if self._active >= self._limit:
            self._audit.request(scope).refused(503, "overloaded")
            message = (
                "this server is handling as many requests as it takes at once; "
                f"retry in {BUSY_RETRY_AFTER_SECONDS} s"
            )
            retry = [(b"retry-after", str(BUSY_RETRY_AFTER_SECONDS).encode())]
            await send_json(send, 503, jsonrpc_error(None, INTERNAL_ERROR, message), headers=retry)
            return
        self._active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._active -= 1


class MethodLayer:
    """405 with `Allow: POST` for any other method on the MCP endpoint `path`."""

    def __init__(self, app: ASGIApp, *, path: str, audit: AuditLog) -> None:
        self.app = app
        self._path = path
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self._path or scope["method"] == "POST":
            await self.app(scope, receive, send)
            return
        self._audit.request(scope).refused(405, "method_not_allowed")
        message = "this server answers POST only: it opens no event stream and keeps no session"
        await send_json(
            send,
            405,
            jsonrpc_error(None, INVALID_REQUEST, message),
            headers=[(b"allow", b"POST")],
        )
