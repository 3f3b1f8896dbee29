"""The issuer service over HTTP: a Starlette app, paths under the issuer URL's path.

    GET  /.well-known/oauth-authorization-server[/path]   RFC 8414 metadata
    GET  [path]/jwks.json       the public signing keys (MCP_JWKS for the servers)
    POST [path]/token           client_credentials (RFC 6749 4.4, RFC 7523, RFC 8707, DPoP RFC 9449)
    POST [path]/revoke          RFC 7009
    GET  [path]/authorize       400 unsupported_response_type (machine clients only)
    GET  /healthz               200 {"status": "ok"}

Token and revocation requests: the body is read with a 16 KiB limit and
parsed strictly (oauth.py); failed client authentication is limited per
claimed client and per address (ratelimit.py: 429 with Retry-After before
the credentials are checked); the decision runs in a worker thread
(service.py: the registry and denylist may block); every answer writes one
audit line (audit.py). Every answer of these two endpoints carries
`Cache-Control: no-store` (RFC 6749 section 5.1).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_warden.issuer.oauth import NO_STORE, OAuthError, error_headers, read_form
from mcp_warden.issuer.ratelimit import FailureLimiter
from mcp_warden.issuer.service import Issuer
from mcp_warden.server.audit import AuditLog

METADATA_PATH = "/.well-known/oauth-authorization-server"
HEALTH_PATH = "/healthz"


def issuer_app(issuer: Issuer, audit: AuditLog, limiter: FailureLimiter) -> Starlette:
    """The ASGI app; its lifespan closes `issuer` and `audit` on shutdown."""
    base = issuer.base_path.rstrip("/")
    max_age = int(issuer.settings.jwks_max_age_seconds)

    async def metadata(_request: Request) -> Response:
        doc = await anyio.to_thread.run_sync(issuer.metadata)
        return JSONResponse(doc, headers={"Cache-Control": "no-cache"})

    async def jwks(_request: Request) -> Response:
        # As long as a replica keeps a fetched JWKS (MCP_JWKS_MAX_AGE_SECONDS), and no longer.
        return Response(
            issuer.keys.jwks_document(),
            media_type="application/json",
            headers={"Cache-Control": f"public, max-age={max_age}"},
        )

    async def authorize(_request: Request) -> Response:
        return JSONResponse(
            {
                "error": "unsupported_response_type",
                "error_description": "this issuer serves machine clients only: use "
                f"grant_type=client_credentials at {issuer.token_endpoint}",
            },
            status_code=400,
            headers=NO_STORE,
        )

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def token(request: Request) -> Response:
        caller = _Caller(request, issuer)
        try:
            form = await caller.form(request, limiter)
            dpop = request.headers.getlist("dpop")
            issued = await anyio.to_thread.run_sync(issuer.issue, form, caller.authorization, dpop)
        except OAuthError as exc:
            return _refused("token", exc, caller, audit, limiter)
        audit.issuer_event(
            event="token",
            outcome="issued",
            status=200,
            client_id=issued.client_id,
            address=caller.address,
            tools=issued.tools,
            jti=issued.jti,
            authenticated=True,
        )
        return JSONResponse(issued.response(), headers=NO_STORE)

    async def revoke(request: Request) -> Response:
        caller = _Caller(request, issuer)
        try:
            form = await caller.form(request, limiter)
            done = await anyio.to_thread.run_sync(issuer.revoke, form, caller.authorization)
        except OAuthError as exc:
            return _refused("revoke", exc, caller, audit, limiter)
        audit.issuer_event(
            event="revoke",
            outcome=done.outcome,
            status=200,
            client_id=done.client_id,
            address=caller.address,
            jti=done.jti,
            reason=done.reason,
            authenticated=True,
        )
        return Response(status_code=200, headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                issuer.close()
            finally:
                audit.close()

    routes = [
        Route(METADATA_PATH + base, metadata, methods=["GET"]),
        Route(base + "/jwks.json", jwks, methods=["GET"]),
        Route(base + "/token", token, methods=["POST"]),
        Route(base + "/revoke", revoke, methods=["POST"]),
        Route(base + "/authorize", authorize, methods=["GET", "POST"]),
        Route(HEALTH_PATH, health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class _Caller:
    """Who calls the token or revocation endpoint: address, credentials, claimed client.

    `claimed` is what the request says it is (from Basic first, then the form)
    before anything is verified: the rate limit and the refusal's audit line
    name it, so it is kept even when reading the form fails.
    """

    def __init__(self, request: Request, issuer: Issuer) -> None:
        self._issuer = issuer
        self.address = _address(request)
        self.authorization = request.headers.get("authorization")
        self.claimed = issuer.claimed_client({}, self.authorization)

    async def form(self, request: Request, limiter: FailureLimiter) -> dict[str, str]:
        """The strictly parsed form; OAuthError when malformed or when the caller is limited."""
        form = await read_form(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
        )
        self.claimed = self._issuer.claimed_client(form, self.authorization)
        _check_limits(limiter, self.address, self.claimed)
        return form


def _address(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def _limit_keys(address: str | None, client_id: str | None) -> list[str]:
    keys = []
    if address is not None:
        keys.append(f"address:{address}")
    if client_id:
        keys.append(f"client:{client_id[:128]}")
    return keys


def _check_limits(limiter: FailureLimiter, address: str | None, claimed: str | None) -> None:
    wait = limiter.retry_after(_limit_keys(address, claimed))
    if wait is not None:
        raise OAuthError(
            "temporarily_unavailable",
            f"too many failed client authentications from this client or address; retry in "
            f"{wait} s",
            "rate_limited",
            429,
            {"Retry-After": str(wait)},
            claimed,
        )


def _refused(
    event: str, exc: OAuthError, caller: _Caller, audit: AuditLog, limiter: FailureLimiter
) -> Response:
    """The RFC 6749 error answer, its audit line, and a failure counted when auth failed."""
    client_id = exc.client_id or caller.claimed
    address = caller.address
    if exc.error == "invalid_client":
        limiter.failed(_limit_keys(address, client_id))
    audit.issuer_event(
        event=event,
        outcome="refused",
        status=exc.status,
        client_id=client_id,
        address=address,
        reason=exc.reason,
        error=exc.error,
        authenticated=exc.authenticated,
    )
    headers: Mapping[str, str] = error_headers(exc)
    return JSONResponse(exc.body(), status_code=exc.status, headers=dict(headers))
