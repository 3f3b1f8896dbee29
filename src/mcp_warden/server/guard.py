"""Per-tool enforcement: a token lists and calls the tools it names, and nothing else runs.

The decision is `grants.permits`; three layers apply it, outermost first:

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
   of every `tools/call` that reaches the SDK. Its grant source
   (`grants.Grants`) re-checks a stdio token (expiry, key, revocation) on
   every request.
3. `guarded(name, fn)`: the wrapper each protected tool is registered with.
   It runs the tool only inside a `ToolGuard` call whose grant names it, and
   notes why a tool failed (a `WardenError`'s `reason`, such as
   `ScavioError.reason`) for the audit line.

A hidden tool and a nonexistent one get byte-identical answers (apart from
the name itself): no layer consults the server's tool list to refuse.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pydantic_core
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, decode_header_value
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_warden.errors import WardenError
from mcp_warden.server.audit import AuditLog, RequestAudit
from mcp_warden.server.grants import (
    TOOL_REFUSED_CODE,
    Grant,
    GrantedCall,
    GrantSource,
    Refusal,
    current_call,
    granted_call,
    permits,
    scope_grant,
    tool_refused_message,
)
from mcp_warden.server.responses import jsonrpc_error, send_json
from mcp_warden.tokens.toolnames import is_tool_name

DENIED = "tool_not_allowed"
"""The audit reason of a tools/call refused because the token does not name the tool."""

_METHOD_HEADER = MCP_METHOD_HEADER.encode("ascii")
_NAME_HEADER = MCP_NAME_HEADER.encode("ascii")


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
        request = ctx.request
        audit = self._audit.request(request.scope if isinstance(request, HTTPConnection) else None)
        name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
        try:
            grant = self._grants(ctx)
        except Refusal as exc:
            audit.grant = exc.grant
            audit.call(name, "denied", exc.reason)
            raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
        audit.grant = grant
        if not permits(grant, name):
            audit.call(name, "denied", DENIED)
            raise MCPError(code=TOOL_REFUSED_CODE, message=tool_refused_message(name))
        with granted_call(grant) as call:
            try:
                result = await call_next(ctx)
            except BaseException as exc:  # cancellation included: the line is still written
                audit.call(name, "error", call.failure or failure_reason(exc))
                raise
        if isinstance(result, Mapping) and result.get("isError") is True:
            ran = "tool_error" if call.ran else "invalid_arguments"
            audit.call(name, "error", call.failure or ran)
        else:
            audit.call(name, "allowed")
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


def guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The tool `fn` (async or not), run only inside a ToolGuard call whose grant names `name`.

    `functools.wraps` keeps the signature (the SDK reads `__wrapped__`), so the
    published input and output schemas are those of `fn`. The SDK runs a
    plain function in a worker thread, which sees the same call (anyio copies
    the context).
    """

    def admitted() -> GrantedCall:
        call = current_call()
        if call is None or not permits(call.grant, name):
            raise ToolError(tool_refused_message(name))
        call.ran = True
        return call

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            call = admitted()
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                call.failure = failure_reason(exc)
                raise

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        call = admitted()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            call.failure = failure_reason(exc)
            raise

    return run


def failure_reason(exc: BaseException) -> str:
    """The audit line's word for why a tools/call failed.

    A `WardenError` names it (`reason`: `ScavioError`'s upstream failure, for
    one); otherwise the kind of failure says it. Any adapter words its failed
    calls here, so one failure reads the same in every audit log.
    """
    if isinstance(exc, WardenError):
        return exc.reason
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
        grant = scope_grant(scope) if scope["type"] == "http" else None
        if grant is None or scope["method"] != "POST" or scope["path"] != self._path:
            await self.app(scope, receive, send)  # without a grant the SDK answers 401
            return
        audit = self._audit.request(scope, grant)
        if _announced_size(scope) > self._max_body:
            await self._too_large(send, audit)
            return
        name = _denied_by_headers(scope, grant)
        if name is not None:
            await self._insufficient_scope(send, name, audit)
            return
        try:
            body = await _read_body(receive, self._max_body)
        except _TooLarge:
            await self._too_large(send, audit)
            return
        if body is None:
            return  # the client went away
        if not await self._refused_body(send, body, grant, audit):
            await self.app(scope, _replay(body, receive), send)

    async def _refused_body(
        self, send: Send, body: bytes, grant: Grant, audit: RequestAudit
    ) -> bool:
        """Answer a batch (400) or a tools/call of a tool `grant` does not name (403)."""
        request = _json(body)
        if isinstance(request, list):
            audit.refused(400, "batch")
            message = "JSON-RPC batches are not accepted; send one message per request"
            await send_json(send, 400, jsonrpc_error(None, INVALID_REQUEST, message))
            return True
        if isinstance(request, dict) and request.get("method") == "tools/call":
            params = request.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if isinstance(name, str) and not permits(grant, name):
                await self._insufficient_scope(send, name, audit, request_id=request.get("id"))
                return True
        return False

    async def _too_large(self, send: Send, audit: RequestAudit) -> None:
        audit.refused(413, "body_too_large")
        message = f"the request body is larger than {self._max_body} bytes"
        await send_json(send, 413, jsonrpc_error(None, INVALID_REQUEST, message))

    async def _insufficient_scope(
        self, send: Send, name: str, audit: RequestAudit, *, request_id: object = None
    ) -> None:
        audit.call(name, "denied", DENIED, status=403)
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
