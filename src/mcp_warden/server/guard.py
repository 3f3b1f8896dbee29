"""Per-tool enforcement: a token lists and calls the tools it names, and nothing else runs.

The decision is `grant.permits`; three layers apply it, outermost first:

1. `ToolScopeLayer` (HTTP only): an ASGI layer after the SDK's bearer
   authentication, so it reads the verified token from `scope["user"]`. It
   reads the POSTed JSON-RPC message (at most the SDK's own body limit) and
   answers a `tools/call` of a tool the token does not name with 403 and
   `WWW-Authenticate: Bearer error="insufficient_scope", scope="<tool>",
   resource_metadata="..."` (MCP authorization spec 2026-07-28, RFC 6750
   section 3.1: the scope the operation needs, and only that), with a
   JSON-RPC error body that clients show. The SDK never sees the request.
   JSON-RPC batches (arrays; removed from MCP in 2025-06-18) are refused
   whole, so no element slips past the check.
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
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_warden.server.audit import AuditLog, Outcome
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
        result = await call_next(ctx)
        return visible_tools(result, grant) if ctx.method == "tools/list" else result

    async def _tools_call(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        started = time.perf_counter()
        name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
        try:
            grant = self._grants(ctx)
        except Refusal as exc:
            self._record(exc.grant, name, "denied", started, exc.reason)
            raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
        if not permits(grant, name):
            self._record(grant, name, "denied", started, DENIED)
            raise MCPError(code=TOOL_REFUSED_CODE, message=tool_refused_message(name))
        call = _Call(grant)
        reset = _current_call.set(call)
        try:
            result = await call_next(ctx)
        except BaseException as exc:  # cancellation included: the line is still written
            self._record(grant, name, "error", started, call.reason or _failure(exc))
            raise
        finally:
            _current_call.reset(reset)
        if isinstance(result, Mapping) and result.get("isError") is True:
            reason = call.reason or ("tool_error" if call.ran else "invalid_arguments")
            self._record(grant, name, "error", started, reason)
        else:
            self._record(grant, name, "allowed", started)
        return result

    def _record(
        self,
        grant: Grant | None,
        tool: object,
        outcome: Outcome,
        started: float,
        reason: str | None = None,
    ) -> None:
        self._audit.record(
            sub=grant.sub if grant else None,
            jti=grant.jti if grant else None,
            tool=tool,
            outcome=outcome,
            reason=reason,
            latency_ms=(time.perf_counter() - started) * 1000,
        )


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
        body = await _read_body(receive, self._max_body)
        if body is None:
            return  # the client went away
        if len(body) > self._max_body:
            message = f"the request body is larger than {self._max_body} bytes"
            await send_json(send, 413, jsonrpc_error(None, INVALID_REQUEST, message))
            return
        request = _json(body)
        if isinstance(request, list):
            message = "JSON-RPC batches are not accepted; send one message per request"
            await send_json(send, 400, jsonrpc_error(None, INVALID_REQUEST, message))
            return
        if isinstance(request, dict) and request.get("method") == "tools/call":
            params = request.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            grant = grant_of(user.access_token)
            if isinstance(name, str) and not permits(grant, name):
                self._audit.record(
                    sub=grant.sub,
                    jti=grant.jti,
                    tool=name,
                    outcome="denied",
                    reason=DENIED,
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
                await self._insufficient_scope(send, request.get("id"), name)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _insufficient_scope(self, send: Send, request_id: object, name: str) -> None:
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


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, cut after `limit` + 1 bytes; None when the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(chunks)[: limit + 1]


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
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the SDK answers with its parse error
