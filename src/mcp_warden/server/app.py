"""The MCP server: the SDK's `MCPServer` with our auth hook, tool guard, tools and audit.

A request's way through the HTTP app (outermost first):

    ConcurrencyLayer       503 beyond MCP_MAX_CONCURRENT_REQUESTS in progress (limits.py)
    MethodLayer            405 (Allow: POST) for GET, DELETE... on /mcp: no stream (limits.py)
    ChallengeLayer         rewords the SDK's 401 with the failed check; 503 when
                           revocations cannot be checked (auth.py)
    SDK authentication     Authorization: Bearer -> TokenVerifierAdapter -> Verifier
    ToolScopeLayer         403 insufficient_scope for a tool the token does not name,
                           413 for a body over 4 MiB, 400 for a batch (guard.py)
    SDK RequireAuth        401 + WWW-Authenticate without a verified token
    SDK streamable HTTP    stateless: any replica answers any request
    ToolGuard              tools/list filtered, tools/call refused, audit line (guard.py)
    guarded tool           ScavioClient, key loaded just-in-time from the store

`GET /healthz` (no auth) answers 200 `{"status": "ok"}`, or 503 when this
replica cannot check revocations (its shared denylist has been unreachable
for longer than MCP_REVOCATION_STALE_SECONDS), so a load balancer can route
around it. It reveals nothing else.

stdio has no HTTP layers: the same `MCPServer` with `ToolGuard` over the one
token in MCP_TOKEN, re-checked on every request (guard.StdioGrants).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp.server import MCPServer
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from mcp.server.context import ServerMiddleware
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from mcp_warden import __version__
from mcp_warden.config import Settings
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import (
    RETRY_AFTER_SECONDS,
    ChallengeLayer,
    TokenVerifierAdapter,
    auth_settings,
    http_grant,
    resource_metadata_url,
)
from mcp_warden.server.guard import GrantSource, StdioGrants, ToolGuard, ToolScopeLayer, guarded
from mcp_warden.server.limits import ConcurrencyLayer, MethodLayer
from mcp_warden.server.tools import ScavioClient, ToolSpec, add_tools, all_tools
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.revocation import Denylist, open_denylist
from mcp_warden.tokens.verifier import Verifier

SERVER_NAME = "mcp-warden"
MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
INSTRUCTIONS = (
    "Web search and page extraction through the Scavio Search API. "
    "This server lists only the tools your access token names."
)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Runtime:
    """What a server process holds for its lifetime: open once, close once."""

    settings: Settings
    store: CredentialStore
    denylist: Denylist
    verifier: Verifier
    scavio: ScavioClient
    audit: AuditLog

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Open everything; ConfigError (or another WardenError) names what is missing."""
        with contextlib.ExitStack() as undo:
            store = CredentialStore.from_settings(settings)
            denylist = open_denylist(settings)
            undo.callback(denylist.close)
            verifier = Verifier.from_settings(settings, denylist)
            undo.callback(verifier.close)
            scavio = ScavioClient.from_settings(
                settings,
                lambda: store.load(settings.scavio_credential),
                timeout=settings.scavio_timeout,
            )
            audit = AuditLog.open(settings.audit_log)
            undo.pop_all()
        return cls(settings, store, denylist, verifier, scavio, audit)

    async def aclose(self) -> None:
        try:
            await self.scavio.aclose()
        finally:
            self.verifier.close()
            self.denylist.close()
            self.audit.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        """The SDK server lifespan: entered once per process, closes the runtime on exit."""
        try:
            yield {}
        finally:
            await self.aclose()


def build_server(
    runtime: Runtime,
    *,
    middleware: Sequence[ServerMiddleware[Any]] = (),
    wrap: Callable[[ToolSpec], Any] | None = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer[dict[str, Any]]:
    """The SDK server with the protected tools; the callers below add enforcement.

    `http_app` and `stdio_server` are the only ways the product builds one;
    this function exists apart so that `bench/server.py` can build the same
    server without authentication to measure what authentication costs.
    """
    server: MCPServer[dict[str, Any]] = MCPServer(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        token_verifier=token_verifier,
        auth=auth,
        lifespan=runtime.lifespan,
        middleware=list(middleware),
        log_level="WARNING",
        # tools/list depends on the caller's token: never shared between callers.
        cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
    )
    add_tools(server, all_tools(runtime.scavio), wrap=wrap)
    return server


def http_app(runtime: Runtime, *, host: str, offload_verify: bool | None = None) -> ASGIApp:
    """The streamable-HTTP ASGI app at /mcp (stateless), with /healthz, bound to `host`.

    `offload_verify`: verify tokens in a worker thread; by default only when
    MCP_JWKS is a URL (see auth.py). The bench sets it to measure the hop.
    """
    settings = runtime.settings
    offload = "://" in settings.jwks if offload_verify is None else offload_verify
    server = build_server(
        runtime,
        middleware=[ToolGuard(http_grant, runtime.audit)],
        wrap=guarded,
        token_verifier=TokenVerifierAdapter(runtime.verifier, offload=offload),
        auth=auth_settings(settings),
    )
    add_health_route(server, runtime.denylist)
    app = streamable_http(server, settings, host)
    metadata = resource_metadata_url(settings)
    # Innermost user middleware: after the SDK's authentication, before its routes.
    app.user_middleware.append(
        Middleware(ToolScopeLayer, path=MCP_PATH, resource_metadata=metadata, audit=runtime.audit)
    )
    challenged = ChallengeLayer(app, resource_metadata=metadata, audit=runtime.audit)
    return ConcurrencyLayer(
        MethodLayer(challenged, path=MCP_PATH, audit=runtime.audit),
        limit=settings.max_concurrent_requests,
        audit=runtime.audit,
        exempt=HEALTH_PATH,
    )


def streamable_http(server: MCPServer[Any], settings: Settings, host: str) -> Starlette:
    """The SDK's stateless streamable-HTTP app for `server` at /mcp (JSON responses)."""
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(settings.token_audience, host),
        host=host,
    )


def stdio_server(runtime: Runtime, claims: Claims) -> MCPServer[dict[str, Any]]:
    """The server a stdio client spawns, under the verified MCP_TOKEN `claims`."""
    grants: GrantSource = StdioGrants(runtime.verifier, claims)
    return build_server(runtime, middleware=[ToolGuard(grants, runtime.audit)], wrap=guarded)


def add_health_route(server: MCPServer[Any], denylist: Denylist) -> None:
    """GET /healthz: 200, or 503 while revocations cannot be checked. Nothing else is said."""

    async def healthz(_request: Request) -> Response:
        if revocations_checkable(denylist):
            return JSONResponse({"status": "ok"})
        return JSONResponse(
            {"status": "unavailable", "reason": "revocation_unavailable"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    server.custom_route(HEALTH_PATH, methods=["GET"])(healthz)


def revocations_checkable(denylist: Denylist) -> bool:
    """False while the denylist would refuse tokens as `revocation_unavailable`."""
    return denylist.fresh()


def transport_security(audience: str, host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection when bound to loopback, as the SDK does, plus the audience host.

    Clients use the audience URL (tokens name it), so its Host and Origin
    must pass even when a local reverse proxy forwards them unchanged.
    """
    if host not in _LOOPBACK_HOSTS:
        return None  # as the SDK: behind a load balancer the Host is the public name
    parts = urlsplit(audience)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", parts.netloc]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    origins.append(f"{parts.scheme}://{parts.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
