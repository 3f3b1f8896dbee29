"""Grants: what a caller may do, where each transport gets it, and the one decision made with it.

A `Grant` is what a verified token says: who (`sub`), which token (`jti`),
and the tool names it may list and call. `permits(grant, name)` is the only
authorization decision in the server; the HTTP scope layer, the SDK
middleware and the tool wrapper (see `guard`) all call it. It reads the
grant and the requested name, never the server's own tool list, so a tool
that exists but is not granted and a tool that does not exist are refused
alike.

Where a request's grant comes from (`Grants`, the source `ToolGuard` asks):

- HTTP: the SDK's bearer authentication verified the token (through
  `auth.TokenVerifierAdapter`) and put it in the request scope
  (`scope["user"]`, an `AccessToken`: `sub` as client_id, `tools` as scopes,
  `jti` among its claims); `grant_of` reads it back. A request without one
  is refused.
- stdio: the one token in MCP_TOKEN, verified at start-up and re-checked
  (expiry, signing key, revocation) on every request (`StdioGrant`).

While a granted `tools/call` runs, `granted_call` holds it in a context
variable, the only place that variable is set; the tool's wrapper reads it
there (and notes whether the tool ran and why it failed, for the audit line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp_types import INVALID_PARAMS
from starlette.requests import HTTPConnection
from starlette.types import Scope

from mcp_warden.errors import WardenError
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.verifier import Verifier

SHOWN_NAME_CHARS = 128

TOOL_REFUSED_CODE = INVALID_PARAMS
"""JSON-RPC code of a refused `tools/call`: the MCP spec's code for an unknown tool."""


@dataclass(frozen=True, slots=True)
class Grant:
    """The caller's token, as far as enforcement and the audit log need it."""

    sub: str
    jti: str
    tools: Collection[str]


class Refusal(WardenError):
    """The caller has no usable grant (any more); `reason` is a stable word for the audit log."""

    reason = "unauthenticated"

    def __init__(self, reason: str, message: str, grant: Grant | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.grant = grant


def permits(grant: Grant, name: object) -> bool:
    """True when `grant` names the tool `name` (exact, case-sensitive; no wildcard)."""
    return isinstance(name, str) and name in grant.tools


def tool_refused_message(name: object) -> str:
    """The refusal text, the same whether the tool exists or not."""
    if not isinstance(name, str):
        return "tools/call needs a tool name; this token names the tools it may call"
    shown = name[:SHOWN_NAME_CHARS] + ("..." if len(name) > SHOWN_NAME_CHARS else "")
    return f"tool {shown!r} is not available with this token; use a token that names it"


# -- HTTP: the verified token in the request scope ------------------------------


def grant_of(token: AccessToken) -> Grant:
    """The grant in what `auth.TokenVerifierAdapter` handed the SDK for a verified token."""
    jti = (token.claims or {}).get("jti")
    return Grant(token.client_id, jti if isinstance(jti, str) else "", token.scopes)


def scope_grant(scope: Scope) -> Grant | None:
    """The grant of an HTTP request the SDK authenticated, or None (it answers 401)."""
    user = scope.get("user")
    return grant_of(user.access_token) if isinstance(user, AuthenticatedUser) else None


# -- stdio: the one token the process runs under ---------------------------------


class StdioGrant:
    """The one token a stdio server runs under (MCP_TOKEN), re-checked on every request."""

    def __init__(self, verifier: Verifier, claims: Claims) -> None:
        self._verifier = verifier
        self._claims = claims
        self._grant = Grant(claims.sub, claims.jti, claims.tools)

    def __call__(self) -> Grant:
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


# -- the source ToolGuard asks ------------------------------------------------------


class GrantSource(Protocol):
    """Where `ToolGuard` gets the caller's grant; raises `Refusal` when there is none."""

    def __call__(self, ctx: ServerRequestContext[Any, Any], /) -> Grant: ...


class Grants:
    """The grant of each request: its bearer token over HTTP, MCP_TOKEN on stdio."""

    def __init__(self) -> None:
        self._stdio: StdioGrant | None = None

    def run_under(self, verifier: Verifier, claims: Claims) -> None:
        """Serve requests that come without HTTP (stdio) under the verified `claims`."""
        self._stdio = StdioGrant(verifier, claims)

    def __call__(self, ctx: ServerRequestContext[Any, Any], /) -> Grant:
        request = ctx.request
        if isinstance(request, HTTPConnection):
            grant = scope_grant(request.scope)
        else:
            grant = self._stdio() if self._stdio is not None else None
        if grant is None:
            raise Refusal("unauthenticated", "this request carries no verified bearer token")
        return grant


# -- the tools/call in progress ------------------------------------------------------


@dataclass(slots=True)
class GrantedCall:
    """A tools/call `ToolGuard` let through, as the tool's wrapper sees and reports it."""

    grant: Grant
    ran: bool = False
    failure: str | None = None


_granted: ContextVar[GrantedCall | None] = ContextVar("mcp_warden_granted_call", default=None)


@contextlib.contextmanager
def granted_call(grant: Grant) -> Iterator[GrantedCall]:
    """Run a tools/call under `grant`: the one writer of the context variable."""
    call = GrantedCall(grant)
    reset = _granted.set(call)
    try:
        yield call
    finally:
        _granted.reset(reset)


def current_call() -> GrantedCall | None:
    """The granted tools/call this code runs in, or None outside any."""
    return _granted.get()
