"""Bearer authentication through the SDK's own hook, and what its refusals say.

The `mcp` SDK authenticates every HTTP request: its `BearerAuthBackend`
calls `TokenVerifierAdapter.verify_token` (our `Verifier`: signature, kid,
typ, iss, aud, exp, lifetime, denylist), its `RequireAuthMiddleware`
answers 401 with `WWW-Authenticate` when that returns None, and it serves
the RFC 9728 metadata at `/.well-known/oauth-protected-resource/mcp`. With
`validate_token_resource=True` it also compares the token's resource (`aud`)
with `MCP_TOKEN_AUDIENCE`, after our verifier already did.

What the SDK cannot say is why a token was refused: it offers no hook for
the 401's text (an exception from the verifier becomes a 500, or a 400 for
Starlette's AuthenticationError). So `ChallengeLayer`, an outer ASGI layer,
gives each request a `Challenge` in a context variable (set there only),
`verify_token` notes the refusal reason in it, and the layer puts that
reason in the SDK's 401: `error_description` names the check that failed,
from a fixed table (nothing of the token is ever echoed). The SDK still decides;
the layer only rewords a refusal. One refusal is not the client's fault:
`revocation_unavailable` (the shared denylist unreachable for longer than
`MCP_REVOCATION_STALE_SECONDS`) is answered 503 with `Retry-After` and a
JSON-RPC error body, which MCP clients show to the user. Every 401 and 503
writes an audit line with the reason (`missing_token` when the request had
no bearer token) and the client's address, never anything of the token.

Verify cost: a token seen before costs the verifier a hash and a dict
lookup, a new one an Ed25519 verify: short and CPU-bound, so `verify_token`
runs on the event loop, as a worker-thread hop would cost about as much as
the check (docs/benchmarks.md has both figures: "tokens", and "verify in a
worker thread" under "server over HTTP"). Only a JWKS fetched from a URL can
block (a fetch when the set is older than its maximum age, or on an unknown
kid, up to its 5 s timeout), so with an https `MCP_JWKS` verification runs
in a worker thread and a slow issuer never stalls the other requests.
`bench/server.py` measures both.

Issuer URL: the SDK's metadata names an authorization server. That is
`MCP_TOKEN_ISSUER` when it is an http(s) URL; otherwise (the default
`mcp-warden`: tokens are minted out of band with `mcp-warden token mint`,
there is no OAuth server) the origin of `MCP_TOKEN_AUDIENCE`, this server,
which serves no OAuth endpoints: a client that tries OAuth discovery finds
none and must be configured with a token.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio.to_thread
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp_types import INTERNAL_ERROR
from pydantic import AnyHttpUrl, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.responses import jsonrpc_error, send_json
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.dpop import ALGORITHMS, DpopError, DpopReason
from mcp_warden.tokens.errors import Reason, TokenError
from mcp_warden.tokens.verifier import Verifier
from mcp_warden.urls import redacted

RETRY_AFTER_SECONDS = 5
"""What a 503 (revocation list unreachable) asks clients to wait."""

# The check that failed, as error_description says it (fixed text: header-safe, no token content).
DESCRIPTIONS: dict[Reason, str] = {
    "malformed": "the bearer token is not a well-formed access token",
    "bad_signature": "the token signature does not verify",
    "unknown_key": "the token is signed by a key this server does not trust (unknown or retired)",
    "wrong_type": "the token is not an access token (typ at+jwt)",
    "unsupported_algorithm": "the token is not signed with EdDSA",
    "missing_claim": "the token lacks a required claim",
    "invalid_claim": "a token claim has an invalid value",
    "expired": "the token has expired",
    "not_yet_valid": "the token is not valid yet",
    "lifetime_too_long": "the token lives longer than this server accepts",
    "wrong_audience": "the token was issued for another server (audience)",
    "wrong_issuer": "the token was issued by an issuer this server does not trust",
    "revoked": "the token has been revoked",
    "revocation_unavailable": "this server cannot reach its revocation list",
}


@dataclass(slots=True)
class Challenge:
    """One HTTP request's token refusal, noted by `verify_token` for `ChallengeLayer`.

    `dpop`: the token verified but its key binding was not honoured (a bound
    token sent as Bearer; with MCP_REQUIRE_DPOP, any unbound token).
    """

    reason: Reason | None = None
    dpop: DpopReason | None = None


_challenge: ContextVar[Challenge | None] = ContextVar("mcp_warden_challenge", default=None)
dpop_verified: ContextVar[str | None] = ContextVar("mcp_warden_dpop_token", default=None)
"""The access token whose DPoP proof `DpopLayer` verified for this request (server/dpop.py)."""

DPOP_ALGS = " ".join(ALGORITHMS)


def dpop_challenge(
    error: str, description: str, nonce: str | None = None
) -> list[tuple[bytes, bytes]]:
    """The headers of a DPoP 401 (RFC 9449 section 7.1): the challenge, and a nonce when asked."""
    value = f'DPoP error="{error}", algs="{DPOP_ALGS}", error_description="{description}"'
    headers = [(b"www-authenticate", value.encode())]
    if nonce is not None:
        headers.append((b"dpop-nonce", nonce.encode()))
    return headers


def access_token(token: str, claims: Claims) -> AccessToken:
    """What the SDK keeps of a verified token (in the request scope's `user`).

    `grants.grant_of` reads the grant back from it: `sub` as client_id,
    `tools` as scopes, `jti` among the claims.
    """
    return AccessToken(
        token=token,
        client_id=claims.sub,
        scopes=sorted(claims.tools),
        expires_at=claims.exp,
        resource=claims.aud,
        subject=claims.sub,
        claims={"iss": claims.iss, "jti": claims.jti, "iat": claims.iat, "kid": claims.kid},
    )


class TokenVerifierAdapter:
    """The SDK's `TokenVerifier` protocol over our `Verifier`."""

    def __init__(self, verifier: Verifier, *, offload: bool, require_dpop: bool = False) -> None:
        """`offload`: verify in a worker thread (for a JWKS fetched from a URL);
        `require_dpop`: refuse every token without a key binding (MCP_REQUIRE_DPOP)."""
        self._verifier = verifier
        self._offload = offload
        self._require_dpop = require_dpop

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            if self._offload:
                claims = await anyio.to_thread.run_sync(self._verifier.verify, token)
            else:
                claims = self._verifier.verify(token)
        except TokenError as exc:
            challenge = _challenge.get()
            if challenge is not None:
                challenge.reason = exc.reason
            return None
        refusal: DpopReason | None = None
        if claims.cnf_jkt is not None:
            if dpop_verified.get() != token:  # only DpopLayer sets it, after the proof
                refusal = "bound_token_as_bearer"
        elif self._require_dpop:
            refusal = "dpop_required"
        if refusal is not None:
            challenge = _challenge.get()
            if challenge is not None:
                challenge.dpop = refusal
            return None
        return access_token(token, claims)


def auth_settings(settings: Settings) -> AuthSettings:
    """The SDK's resource-server settings for MCP_TOKEN_AUDIENCE (see the module docstring)."""
    audience = settings.token_audience
    parts = urlsplit(audience)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"MCP_TOKEN_AUDIENCE={redacted(audience)!r} is not an http(s) URL; set it to the URL "
            "clients use for this server, e.g. https://mcp.example.com/mcp"
        )
    issuer = settings.token_issuer
    if urlsplit(issuer).scheme not in ("http", "https"):
        issuer = f"{parts.scheme}://{parts.netloc}"
    try:
        # Validated from text, so the SDK keeps a path-less issuer exactly as given (no "/").
        return AuthSettings.model_validate(
            {"issuer_url": issuer, "resource_server_url": audience, "validate_token_resource": True}
        )
    except ValidationError:
        raise ConfigError(
            "MCP_TOKEN_AUDIENCE or MCP_TOKEN_ISSUER is not a valid URL; check both"
        ) from None


def resource_metadata_url(settings: Settings) -> str:
    """Where the SDK serves this resource's RFC 9728 metadata."""
    return str(build_resource_metadata_url(AnyHttpUrl(settings.token_audience)))


async def send_dpop_refusal(send: Send, error: DpopError, nonce: str | None = None) -> None:
    """A 401 with the DPoP challenge for `error` (its fixed text; nothing of the request)."""
    description = f"{error.reason}: {error}"
    payload = {"error": error.error, "error_description": description}
    await send_json(send, 401, payload, headers=dpop_challenge(error.error, description, nonce))


class ChallengeLayer:
    """Outermost ASGI layer: says in the SDK's 401 which check failed (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, resource_metadata: str, audit: AuditLog) -> None:
        self.app = app
        self._resource_metadata = resource_metadata
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False
        challenge = Challenge()

        async def send_reworded(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the SDK's own body of the 401 we replaced
            reason = challenge.reason
            if message["type"] == "http.response.start" and message["status"] == 401:
                if challenge.dpop is not None:
                    self._audit.request(scope).refused(401, f"dpop_{challenge.dpop}")
                    replaced = True
                    await send_dpop_refusal(send, DpopError(challenge.dpop))
                    return
                status = 503 if reason == "revocation_unavailable" else 401
                self._audit.request(scope).refused(status, reason or "missing_token")
                if reason:
                    replaced = True
                    await self._refuse(send, reason)
                    return
            await send(message)

        reset = _challenge.set(challenge)
        try:
            await self.app(scope, receive, send_reworded)
        finally:
            _challenge.reset(reset)

    async def _refuse(self, send: Send, reason: Reason) -> None:
        description = f"{reason}: {DESCRIPTIONS.get(reason, 'the token was refused')}"
        if reason == "revocation_unavailable":
            message = (
                f"{description} and refuses tokens until it can; retry in {RETRY_AFTER_SECONDS} s"
            )
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            await send_json(send, 503, jsonrpc_error(None, INTERNAL_ERROR, message), headers=retry)
            return
        challenge = (
            f'Bearer error="invalid_token", error_description="{description}", '
            f'resource_metadata="{self._resource_metadata}"'
        )
        payload = {"error": "invalid_token", "error_description": description}
        await send_json(send, 401, payload, headers=[(b"www-authenticate", challenge.encode())])
