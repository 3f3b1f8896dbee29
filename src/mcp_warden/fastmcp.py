"""mcp-warden for FastMCP 4.x servers: an `auth=` provider and a middleware.

    from fastmcp import FastMCP
    from mcp_warden.fastmcp import WardenAuth, WardenMiddleware
    from mcp_warden.warden import Warden

    warden = Warden.open()  # MCP_JWKS, MCP_TOKEN_AUDIENCE, MCP_REVOCATION_URL, MCP_AUDIT_LOG...
    mcp = FastMCP("mine", auth=WardenAuth(warden), middleware=[WardenMiddleware(warden)])

FastMCP splits a server's protection in two, and so does this module.
`WardenAuth` is the HTTP side, a FastMCP `TokenVerifier`: every bearer token
goes through our `Verifier` (signature, claims, audience, revocation
denylist), and the ASGI layers it adds to FastMCP's app are the ones our own
server runs: the 401 says which check failed and revocations that cannot be
checked are a 503 (`server.auth.ChallengeLayer`), and a `tools/call` of a
tool the token does not name is answered 403 `insufficient_scope` naming the
tool before FastMCP sees it (`server.guard.ToolScopeLayer`). FastMCP's own
`InsufficientScopeError` cannot do that last part: FastMCP returns it as a
tool error result inside an HTTP 200, which no client can step up from. It
also serves the RFC 9728 metadata of MCP_TOKEN_AUDIENCE that both name.

`WardenMiddleware` is the MCP side: `tools/list` shows only the tools the
token names, any other `tools/call` is refused with `InsufficientScopeError`
(what reaches it without passing the HTTP layer: stdio, FastMCP's in-memory
client, a `call_tool` from server code), and every `tools/call` that reaches
FastMCP gets its audit line (the 403 layer writes the line of those it
refuses). Over stdio there is no bearer token: the caller is the token in
MCP_TOKEN, verified again on every request, as `mcp-warden serve --transport
stdio` does. The decision is `grants.permits` everywhere. The `tools` claim
governs tools only: resources and prompts are open to every valid token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

try:
    from fastmcp.exceptions import AuthorizationError, InsufficientScopeError, ValidationError
    from fastmcp.exceptions import ToolError as FastMCPToolError
    from fastmcp.server.auth import AccessToken, TokenVerifier
    from fastmcp.server.dependencies import get_access_token, get_http_request
    from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
    from fastmcp.tools import Tool, ToolResult
except ModuleNotFoundError as exc:  # pragma: no cover - tests/test_fastmcp.py, in a subprocess
    if exc.name is None or exc.name.split(".")[0] != "fastmcp":
        raise
    raise ImportError(
        "mcp_warden.fastmcp needs FastMCP, an optional extra: pip install 'mcp-warden[fastmcp]'"
    ) from None

import mcp_types
from mcp.server.auth.routes import create_protected_resource_routes
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST
from pydantic import AnyHttpUrl
from starlette.middleware import Middleware as AsgiMiddleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp

from mcp_warden.server.auth import (
    ChallengeLayer,
    TokenVerifierAdapter,
    auth_settings,
    resource_metadata_url,
)
from mcp_warden.server.grants import Grant, Refusal, grant_of, permits, tool_refused_message
from mcp_warden.server.guard import DENIED, ToolScopeLayer, failure_reason
from mcp_warden.tokens.errors import TokenError
from mcp_warden.warden import Warden

__all__ = ["WardenAuth", "WardenMiddleware"]


class WardenAuth(TokenVerifier):
    """FastMCP `auth=` provider: our verifier, reworded 401s and the 403 step-up."""

    def __init__(self, warden: Warden) -> None:
        """Raises ConfigError when MCP_TOKEN_AUDIENCE (or an issuer URL) is not a valid URL."""
        settings = warden.settings
        sdk = auth_settings(settings)
        audience = urlsplit(settings.token_audience)
        super().__init__(base_url=f"{audience.scheme}://{audience.netloc}")
        self._audit = warden.audit
        # No DPoP layer here: DPoP-bound tokens are refused (as Bearer), fail closed.
        self._adapter = TokenVerifierAdapter(
            warden.verifier, offload="://" in settings.jwks, require_dpop=settings.require_dpop
        )
        self._resource = AnyHttpUrl(settings.token_audience)
        self._issuer = sdk.issuer_url
        self._metadata = resource_metadata_url(settings)
        self._default_path = audience.path or "/"

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access as FastMCP keeps it, or None (then the 401 names the reason)."""
        verified = await self._adapter.verify_token(token)
        return None if verified is None else AccessToken(**verified.model_dump())

    def get_routes(self, mcp_path: str | None = None) -> list[Route]:
        """The RFC 9728 protected-resource metadata of MCP_TOKEN_AUDIENCE."""
        self.set_mcp_path(mcp_path)
        return create_protected_resource_routes(self._resource, [self._issuer])

    def get_middleware(self) -> list[Any]:
        """FastMCP's bearer authentication between our 401 wording and our 403 layer."""
        return [
            AsgiMiddleware(ChallengeLayer, resource_metadata=self._metadata, audit=self._audit),
            *super().get_middleware(),
            AsgiMiddleware(self._scope_layer),
        ]

    def _scope_layer(self, app: ASGIApp) -> ASGIApp:
        # Starlette builds its middleware on the first request, after FastMCP
        # told `get_routes` where the MCP endpoint is (it asks for the
        # middleware first); until then the audience's path is the best guess.
        return ToolScopeLayer(
            app,
            path=self._mcp_path or self._default_path,
            resource_metadata=self._metadata,
            audit=self._audit,
        )


class WardenMiddleware(Middleware):
    """FastMCP middleware: tools/list and tools/call scoped to the token, one audit line a call."""

    def __init__(self, warden: Warden) -> None:
        self._warden = warden

    async def on_list_tools(
        self,
        context: MiddlewareContext[mcp_types.ListToolsRequest],
        call_next: CallNext[mcp_types.ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        try:
            grant = self._grant()
        except Refusal as exc:
            raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
        return [tool for tool in await call_next(context) if permits(grant, tool.name)]

    async def on_call_tool(
        self,
        context: MiddlewareContext[mcp_types.CallToolRequestParams],
        call_next: CallNext[mcp_types.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        name = context.message.name
        request = _http_request()
        audit = self._warden.audit.request(request.scope if request is not None else None)
        try:
            audit.grant = grant = self._grant()
        except Refusal as exc:
            audit.grant = exc.grant
            audit.call(name, "denied", exc.reason)
            raise AuthorizationError(str(exc)) from None
        if not permits(grant, name):
            audit.call(name, "denied", DENIED)
            raise InsufficientScopeError([name], message=tool_refused_message(name))
        try:
            result = await call_next(context)
        except BaseException as exc:  # cancellation included: the line is still written
            audit.call(name, "error", _failure(exc))
            raise
        audit.call(name, "allowed")
        return result

    def _grant(self) -> Grant:
        """The caller's grant: the verified bearer token, or MCP_TOKEN when there is no HTTP."""
        token = get_access_token()
        if token is not None:
            return grant_of(token)
        if _http_request() is not None:
            raise Refusal(
                "unauthenticated",
                "this request carries no verified bearer token; "
                "give FastMCP auth=WardenAuth(warden) as well as this middleware",
            )
        return self._stdio_grant()

    def _stdio_grant(self) -> Grant:
        token = self._warden.settings.token
        if token is None:
            raise Refusal(
                "missing_token",
                "MCP_TOKEN is not set; without HTTP this server runs under one token: "
                "mint one with `mcp-warden token mint` and export it as MCP_TOKEN",
            )
        try:
            claims = self._warden.verifier.verify(token)
        except TokenError as exc:
            raise Refusal(
                exc.reason,
                f"the token this server runs under (MCP_TOKEN) was refused ({exc.reason}); "
                "restart the server with a new token from `mcp-warden token mint`",
            ) from None
        if claims.cnf_jkt is not None:
            raise Refusal(
                "bound_token",
                "the token this server runs under (MCP_TOKEN) is bound to a DPoP key; "
                "stdio carries no proofs: restart the server with an unbound token",
            )
        return Grant(claims.sub, claims.jti, claims.tools)


def _http_request() -> Request | None:
    """The Starlette request being served, or None (stdio, in-memory client)."""
    try:
        return get_http_request()
    except RuntimeError:
        return None


def _failure(exc: BaseException) -> str:
    """The audit word for a failed call: FastMCP's argument validation, else the shared rule."""
    if isinstance(exc, ValidationError):
        return "invalid_arguments"
    if isinstance(exc, FastMCPToolError):
        return "tool_error"
    return failure_reason(exc)
