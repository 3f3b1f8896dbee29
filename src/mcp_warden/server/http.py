"""The HTTP app around any protected `MCPServer`: our layers, `/healthz`, the stateless transport.

A request's way through it (outermost first):

    ConcurrencyLayer       503 beyond MCP_MAX_CONCURRENT_REQUESTS in progress (limits.py)
    MethodLayer            405 (Allow: POST) for GET, DELETE... on /mcp: no stream (limits.py)
    DpopLayer              Authorization: DPoP: proof, binding, replay cache, then handed
                           on as a verified Bearer (dpop.py)
    ChallengeLayer         rewords the SDK's 401 with the failed check; 503 when
                           revocations cannot be checked (auth.py)
    SDK authentication     Authorization: Bearer -> TokenVerifierAdapter -> Verifier
    ToolScopeLayer         403 insufficient_scope for a tool the token does not name,
                           413 for a body over 4 MiB, 400 for a batch (guard.py)
    SDK RequireAuth        401 + WWW-Authenticate without a verified token
    SDK streamable HTTP    stateless: any replica answers any request
    ToolGuard              tools/list filtered, tools/call refused, audit line (guard.py)
    guarded tool           the server's own tool, run only under a grant that names it

The SDK parts come from the server's construction options
(`Warden.server_options`); `protected_app` adds the rest around the SDK's app.

`GET /.well-known/oauth-protected-resource/mcp` (no auth) is the RFC 9728
metadata: the authorization server and the server's tools as
`scopes_supported` (`publish_tool_scopes`).

`GET /healthz` (no auth) answers 200 `{"status": "ok"}`, or 503 when this
replica cannot check revocations (its shared denylist has been unreachable
for longer than MCP_REVOCATION_STALE_SECONDS), so a load balancer can route
around it. It reveals nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from mcp_warden.config import Settings
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import (
    RETRY_AFTER_SECONDS,
    ChallengeLayer,
    resource_metadata_route,
    resource_metadata_url,
)
from mcp_warden.server.guard import ToolScopeLayer
from mcp_warden.server.limits import ConcurrencyLayer, MethodLayer
from mcp_warden.tokens.revocation import Denylist

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def protected_app(
    server: MCPServer[Any],
    *,
    settings: Settings,
    denylist: Denylist,
    audit: AuditLog,
    host: str,
    dpop: Callable[[ASGIApp], ASGIApp] | None = None,
) -> ASGIApp:
    """`server`'s stateless streamable-HTTP app at /mcp in our layers, with /healthz.

    `dpop` wraps the challenge layer with the DPoP layer (Warden.http_app builds it).
    """
    add_health_route(server, denylist)
    app = streamable_http(server, settings, host)
    publish_tool_scopes(app, server)
    metadata = resource_metadata_url(settings)
    # Innermost user middleware: after the SDK's authentication, before its routes.
    app.user_middleware.append(
        Middleware(ToolScopeLayer, path=MCP_PATH, resource_metadata=metadata, audit=audit)
    )
    challenged: ASGIApp = ChallengeLayer(app, resource_metadata=metadata, audit=audit)
    if dpop is not None:
        challenged = dpop(challenged)
    return ConcurrencyLayer(
        MethodLayer(challenged, path=MCP_PATH, audit=audit),
        limit=settings.max_concurrent_requests,
        audit=audit,
        exempt=HEALTH_PATH,
    )


def streamable_http(server: MCPServer[Any], settings: Settings, host: str) -> Starlette:
    """The SDK's stateless streamable-HTTP app for `server` at /mcp.

    JSON responses: the SDK's cheaper way to answer (no SSE stream of one event);
    stateless: no session to keep, any replica answers any request.
    """
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(settings.token_audience, host),
        host=host,
    )


def publish_tool_scopes(app: Starlette, server: MCPServer[Any]) -> None:
    """Serve the RFC 9728 metadata with the server's tools as `scopes_supported`.

    Replaces the SDK's route at the same path (see `auth.resource_metadata_route`).
    """
    auth = server.settings.auth
    if auth is None or auth.resource_server_url is None:
        return  # not protected: `Warden.http_app` refuses such a server before this

    async def tool_names() -> list[str]:
        return [tool.name for tool in await server.list_tools()]

    route = resource_metadata_route(auth, tool_names)
    routes = app.router.routes
    at = next(
        (i for i, r in enumerate(routes) if isinstance(r, Route) and r.path == route.path), None
    )
    if at is None:
        routes.insert(0, route)
    else:
        routes[at] = route


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
