"""Per-tool enforcement: a token lists and calls the tools it names, and nothing else runs.

The decision is `grant.permits`; three layers apply it, outermost first:

1. `ToolScopeLayer` (HTTP only): an ASGI layer after the SDK's bearer
   authentication, so it reads the verified token from `scope["user"]`. It
   answers a `tools/call` of a tool the token does not name with 403 and
   `WWW-Authenticate: Bearer error="insufficient_scope", scope="<tool>",
   resource_metadata="..."` (MCP authorization spec 2026-07-28, RFC 6750
   section 3.1: the scope the operation needs, and only that), with a
   JSON-RPC error body that clients show. The SDK never sees the request.
   It decides from the 2026-07-28 `Mcp-Method`/`Mcp-Name` headers when the
   request carries them, before reading the body (the SDK refuses a body
   that disagrees with them); otherwise, and also after the headers passed,
   from the POSTed JSON-RPC message. A body announced (`Content-Length`)
   larger than the SDK's own limit is refused with 413 unread; one streamed
   past the limit is refused once the limit is crossed. JSON-RPC batches
   (arrays; removed from MCP in 2025-06-18) are refused whole, so no
   element slips past the check. Each refusal writes an audit line.
2. `ToolGuard` (both transports; the only layer on stdio): SDK
   `ServerMiddleware` that filters `tools/list` to the token's tools and
   refuses any other `tools/call` with JSON-RPC error -32602 (the spec's
   code for an unknown tool) before lookup, validation or the tool run. It
   sees the message as the SDK parsed it, so a parser difference between
   layer 1 and the SDK cannot bypass enforcement. It writes the audit line
   of every `tools/call` that reaches the SDK. On stdio its `GrantSource`
   re-checks the token (expiry, key, revocation) on every request.
3. `guarded(spec)`: the wrapper each protected tool is registered with. It
   runs the tool only inside a `ToolGuard` call whose grant names it, and
   records why a tool failed (`ScavioError.reason`) for the audit line.

A hidden tool and a nonexistent one get byte-identical answers (apart from
the name itself): no layer consults the server's tool list to refuse.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic_core
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, decode_header_value
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_warden.server.audit import AuditLog, Outcome, client_address
from mcp_warden.server.auth import grant_of
from mcp_warden.server.grant import (
    TOOL_REFUSED_CODE,
    Grant,
    Refusal,
    permits,
    tool_refused_message,
)
from mcp_warden.server.responses import jsonrpc_error, send_json
from mcp_warden.server.tools.base import ToolSpec
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.toolnames import is_tool_name
from mcp_warden.tokens.verifier import Verifier

DENIED = "tool_not_allowed"
"""The audit reason of a tools/call refused because the token does not name the tool."""

_METHOD_HEADER = MCP_METHOD_HEADER.encode("ascii")
_NAME_HEADER = MCP_NAME_HEADER.encode("ascii")


class GrantSource(Protocol):
    """Where `ToolGuard` gets the caller's grant; raises `Refusal` when there is none."""

    def __call__(self, ctx: ServerRequestContext[Any, Any], /) -> Grant: ...


class StdioGrants:
    """The one token a stdio server runs under (MCP_TOKEN), re-checked on every request."""

    def __init__(self, verifier: Verifier, claims: Claims) -> None:
        self._verifier = verifier
        self._claims = claims
        self._grant = Grant(claims.sub, claims.jti, claims.tools)

    def __call__(self, ctx: ServerRequestContext[Any, Any], /) -> Grant:
        try:
            self._verifier.check_still_valid(self._claims)
        except TokenError as exc:
            raise Refusal(
                exc.reason,
                f"the token this server runs under (MCP_TOKEN) is no longer valid "
                f"({exc.reason}: {exc}); restart the server with a new token",
                self._grant,
            ) from None
        return self._grant


@dataclass
class _Call:
    """One tools/call in progress, shared by ToolGuard and the tool's wrapper."""

    grant: Grant
    ran: bool = False
    reason: str | None = None


_current_call: ContextVar[_Call | None] = ContextVar("mcp_warden_tool_call", default=None)


class ToolGuard:
    """SDK `ServerMiddleware`: token-scoped tools/list and tools/call, and the audit line."""

    def __init__(self, grants: GrantSource, audit: AuditLog) -> None:
        self._grants = grants
        self._audit = audit

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.request_id is None:  # a notification: nothing runs, nothing to answer
            return await call_next(ctx)
        if ctx.method == "tools/call":
            return await self._tools_call(ctx, call_next)
        try:
            grant = self._grants(ctx)
        except Refusal as exc:
            raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
        if ctx.method == "prompts/get":
            return await _quiet_prompt(ctx, call_next)
        result = await call_next(ctx)
        return visible_tools(result, grant) if ctx.method == "tools/list" else result

    async def _tools_call(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        started = time.perf_counter()
        name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
        request = ctx.request
        client = client_address(request.scope) if isinstance(request, HTTPConnection) else None

        def record(grant: Grant | None, outcome: Outcome, reason: str | None = None) -> None:
            self._audit.record(
                sub=grant.sub if grant else None,
                jti=grant.jti if grant else None,
                tool=name,
                outcome=outcome,
                reason=reason,
                latency_ms=(time.perf_counter() - started) * 1000,
                client=client,
            )

        try:
            grant = self._grants(ctx)
        except Refusal as exc:
            record(exc.grant, "denied", exc.reason)
            raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
        if not permits(grant, name):
            record(grant, "denied", DENIED)
            raise MCPError(code=TOOL_REFUSED_CODE, message=tool_refused_message(name))
        call = _Call(grant)
        reset = _current_call.set(call)
        try:
            result = await call_next(ctx)
        except BaseException as exc:  # cancellation included: the line is still written
            record(grant, "error", call.reason or _failure(exc))
            raise
        finally:
            _current_call.reset(reset)
        if isinstance(result, Mapping) and result.get("isError") is True:
            record(
                grant, "error", call.reason or ("tool_error" if call.ran else "invalid_arguments")
            )
        else:
            record(grant, "allowed")
        return result


async def _quiet_prompt(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """prompts/get, whose unknown-prompt error is a JSON-RPC error and not a logged traceback.

    The SDK's `get_prompt` raises ValueError for a prompt it does not have
    (this server has none), which its dispatcher logs as an ERROR with a
    traceback: one per request, for any token holder. As an MCPError it is
    answered alike (-32602, the spec's code for an invalid prompt name) and
    not logged.
    """
    try:
        return await call_next(ctx)
    except ValueError as exc:
        raise MCPError(code=INVALID_PARAMS, message=str(exc)[:200]) from None


def visible_tools(result: HandlerResult, grant: Grant) -> HandlerResult:
    """A tools/list result without the tools `grant` does not name (fails closed)."""
    tools = result.get("tools") if isinstance(result, Mapping) else None
    if not isinstance(result, Mapping) or not isinstance(tools, list):
        raise MCPError(code=INTERNAL_ERROR, message="tools/list could not be filtered; refused")
    shown = [
        tool for tool in tools if isinstance(tool, Mapping) and permits(grant, tool.get("name"))
    ]
    return {**result, "tools": shown}


def guarded(spec: ToolSpec) -> Callable[..., Awaitable[Any]]:
    """`spec.fn`, run only inside a ToolGuard call whose grant names `spec.name`."""
    fn = spec.fn

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        call = _current_call.get()
        if call is None or not permits(call.grant, spec.name):
            raise ToolError(tool_refused_message(spec.name))
        call.ran = True
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            call.reason = _failure(exc)
            raise

    return run


def _failure(exc: BaseException) -> str:
    """A stable word for why a call failed (a tool error's own `reason` when it has one)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    if isinstance(exc, ToolError):
        return "tool_error"
    if isinstance(exc, MCPError):
        return "invalid_request"
    if not isinstance(exc, Exception):
        return "cancelled"
    return "internal_error"


class ToolScopeLayer:
    """ASGI layer after the SDK's authentication: 403 insufficient_scope before the SDK runs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        resource_metadata: str,
        audit: AuditLog,
        max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
    ) -> None:
        self.app = app
        self._path = path
        self._resource_metadata = resource_metadata
        self._audit = audit
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self._path
            or not isinstance(user, AuthenticatedUser)  # the SDK answers 401
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        grant = grant_of(user.access_token)
        client = client_address(scope)
        if _announced_size(scope) > self._max_body:
            await self._too_large(send, grant, client)
            return
        name = _denied_by_headers(scope, grant)
        if name is not None:
            await self._insufficient_scope(send, name, grant, client=client, started=started)
            return
        try:
            body = await _read_body(receive, self._max_body)
        except _TooLarge:
            await self._too_large(send, grant, client)
            return
        if body is None:
            return  # the client went away
        if not await self._refused_body(send, body, grant, client, started):
            await self.app(scope, _replay(body, receive), send)

    async def _refused_body(
        self, send: Send, body: bytes, grant: Grant, client: str | None, started: float
    ) -> bool:
        """Answer a batch (400) or a tools/call of a tool `grant` does not name (403)."""
        request = _json(body)
        if isinstance(request, list):
            self._audit.refused(
                status=400, reason="batch", client=client, sub=grant.sub, jti=grant.jti
            )
            message = "JSON-RPC batches are not accepted; send one message per request"
            await send_json(send, 400, jsonrpc_error(None, INVALID_REQUEST, message))
            return True
        if isinstance(request, dict) and request.get("method") == "tools/call":
            params = request.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if isinstance(name, str) and not permits(grant, name):
                await self._insufficient_scope(
                    send, name, grant, client=client, started=started, request_id=request.get("id")
                )
                return True
        return False

    async def _too_large(self, send: Send, grant: Grant, client: str | None) -> None:
        self._audit.refused(
            status=413, reason="body_too_large", client=client, sub=grant.sub, jti=grant.jti
        )
        message = f"the request body is larger than {self._max_body} bytes"
        await send_json(send, 413, jsonrpc_error(None, INVALID_REQUEST, message))

    async def _insufficient_scope(
        self,
        send: Send,
        name: str,
        grant: Grant,
        *,
        client: str | None,
        started: float,
        request_id: object = None,
    ) -> None:
        self._audit.record(
            sub=grant.sub,
            jti=grant.jti,
            tool=name,
            outcome="denied",
            reason=DENIED,
            latency_ms=(time.perf_counter() - started) * 1000,
            client=client,
        )
        # The tool name goes in the header only when it is a valid tool name
        # (A-Z a-z 0-9 _ - .): nothing else can break out of the quoted string.
        scope = f'scope="{name}", ' if is_tool_name(name) else ""
        challenge = (
            f'Bearer error="insufficient_scope", {scope}'
            f'resource_metadata="{self._resource_metadata}", '
            'error_description="the token does not name this tool"'
        )
        error = jsonrpc_error(request_id, TOOL_REFUSED_CODE, tool_refused_message(name))
        await send_json(send, 403, error, headers=[(b"www-authenticate", challenge.encode())])


class _TooLarge(Exception):
    """The body passed the limit while it was read."""


def _announced_size(scope: Scope) -> int:
    """The Content-Length the client announced (-1 when absent or not a number)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1  # h11 refuses such a request before it gets here
    return -1


def _denied_by_headers(scope: Scope, grant: Grant) -> str | None:
    """The tool an `Mcp-Method: tools/call` request names in `Mcp-Name` and `grant` does not.

    Every copy of the headers is looked at, so a repeated header cannot hide
    a name. An undecodable `Mcp-Name` decides nothing here: the SDK refuses
    it, and the body is checked anyway.
    """
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    if not any(k == _METHOD_HEADER and v == b"tools/call" for k, v in headers):
        return None
    for key, value in headers:
        if key == _NAME_HEADER:
            name = decode_header_value(value.decode("latin-1"))
            if name is not None and not permits(grant, name):
                return name
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when the client went away; `_TooLarge` past `limit`.

    A body in one message (the usual case) is returned as received, without a copy.
    """
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    size = len(body)
    if size > limit:
        raise _TooLarge
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the already-read body once, then defers to the real one."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json(body: bytes) -> object:
    """The body parsed as the SDK parses it (pydantic-core, from the bytes: no text copy)."""
    try:
        return pydantic_core.from_json(body)
    except ValueError:
        return None  # not JSON (or nested past the parser's limit): the SDK answers with its error
