"""DPoP on `serve` (RFC 9449): an ASGI layer that verifies `Authorization: DPoP` requests.

The SDK's `BearerAuthBackend` reads only `Authorization: Bearer`. `DpopLayer`
sits outside `ChallengeLayer` and, for a request whose scheme is DPoP:

1. takes exactly one `DPoP` header and checks the proof (tokens/dpop:
   typ, alg, public jwk, signature, htm = the request method, htu = the
   audience URL MCP_TOKEN_AUDIENCE as clients address it, iat in the window,
   ath = the token's hash, and the server nonce with MCP_DPOP_NONCE=1);
2. verifies the token with our `Verifier` (signature, claims, denylist);
3. requires a binding, `cnf.jkt`, equal to the proof key's thumbprint;
4. records (jkt, jti) in the replay cache shared by every replica (refusing
   a proof seen before, and refusing when the cache cannot answer);
5. hands the request to the SDK as `Authorization: Bearer <token>` with the
   token noted in the `dpop_verified` context variable, so that the SDK's own
   authentication (`TokenVerifierAdapter`, a cache hit in the verifier) sets
   `scope["user"]` as for any token, and RequireAuth, scopes and the tool guard
   work unchanged.

The adapter refuses a bound token that arrives as Bearer (the context
variable does not name it) and, with MCP_REQUIRE_DPOP=1, every unbound token.
A `DPoP` header without the DPoP scheme is refused too. Each refusal is a 401
with `WWW-Authenticate: DPoP error="invalid_dpop_proof" | "use_dpop_nonce" |
"invalid_token", algs="EdDSA ES256", error_description=<fixed text>` and an
audit line `dpop_<reason>`; nothing of the token or the proof is echoed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio.to_thread
from mcp_types import INTERNAL_ERROR
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_warden.config import Settings
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import (
    DESCRIPTIONS,
    RETRY_AFTER_SECONDS,
    dpop_challenge,
    dpop_verified,
    send_dpop_refusal,
)
from mcp_warden.server.responses import jsonrpc_error, send_json
from mcp_warden.tokens.dpop import DpopError, Proof, verify_proof
from mcp_warden.tokens.dpop_nonce import NonceSource
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.replay import MemoryReplayCache, ReplayCache
from mcp_warden.tokens.verifier import Verifier


class DpopLayer:
    """Verifies DPoP-scheme requests and passes them on as verified (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        verifier: Verifier,
        replay: ReplayCache,
        audit: AuditLog,
        nonces: NonceSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self._audience = settings.token_audience
        self._window = (settings.dpop_max_age_seconds, settings.dpop_future_seconds)
        self._verifier = verifier
        self._offload_verify = "://" in settings.jwks
        self._replay = replay
        self._replay_inline = isinstance(replay, MemoryReplayCache)
        self._audit = audit
        self._nonces = nonces
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization: list[bytes] = []
        proofs: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value)
            elif name == b"dpop":
                proofs.append(value)
        scheme, _, credentials = (authorization[0] if authorization else b"").partition(b" ")
        if scheme.lower() != b"dpop":
            if proofs:
                await self._refuse(scope, send, DpopError("proof_without_token"))
                return
            await self.app(scope, receive, self._with_nonce(send))
            return
        try:
            token = await self._check(scope, authorization, credentials, proofs)
        except DpopError as exc:
            await self._refuse(scope, send, exc)
            return
        except TokenError as exc:
            await self._refuse_token(scope, send, exc)
            return
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"authorization", b"dpop")
        ]
        headers.append((b"authorization", b"Bearer " + token.encode("ascii")))
        reset = dpop_verified.set(token)
        try:
            await self.app({**scope, "headers": headers}, receive, self._with_nonce(send))
        finally:
            dpop_verified.reset(reset)

    async def _check(
        self, scope: Scope, authorization: list[bytes], credentials: bytes, proofs: list[bytes]
    ) -> str:
        """The token of a DPoP request whose proof, token, binding and jti all pass."""
        token = self._token(authorization, credentials)
        proof = self._proof(scope, proofs, token)
        if self._offload_verify:
            claims = await anyio.to_thread.run_sync(self._verifier.verify, token)
        else:
            claims = self._verifier.verify(token)
        if claims.cnf_jkt is None:
            raise DpopError("unbound_token")
        if claims.cnf_jkt != proof.jkt:
            raise DpopError("key_mismatch")
        await self._first_use(proof)
        return token

    @staticmethod
    def _token(authorization: list[bytes], credentials: bytes) -> str:
        if len(authorization) != 1:
            raise DpopError("malformed")
        token = credentials.strip(b" ")
        if not token or not token.isascii() or b" " in token:
            raise DpopError("malformed")
        return token.decode("ascii")

    def _proof(self, scope: Scope, proofs: list[bytes], token: str) -> Proof:
        if not proofs:
            raise DpopError("missing_proof")
        if len(proofs) != 1:
            raise DpopError("multiple_proofs")
        if not proofs[0].isascii():
            raise DpopError("malformed")
        return verify_proof(
            proofs[0].decode("ascii"),
            method=scope["method"],
            url=self._audience,
            access_token=token,
            now=self._clock(),
            window=self._window,
            nonce_check=self._nonces.check if self._nonces is not None else None,
        )

    async def _first_use(self, proof: Proof) -> None:
        until = proof.iat + self._window[0]
        if self._replay_inline:
            new = self._replay.first_use(proof.jkt, proof.jti, until)
        else:  # a Redis or SQLite round trip: off the event loop
            new = await anyio.to_thread.run_sync(
                self._replay.first_use, proof.jkt, proof.jti, until
            )
        if not new:
            raise DpopError("replayed")

    def _with_nonce(self, send: Send) -> Send:
        """`send` adding the current DPoP-Nonce to the response (nonces on), so clients keep up."""
        nonces = self._nonces
        if nonces is None:
            return send

        async def send_with_nonce(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"dpop-nonce", nonces.current().encode())]
                message = {**message, "headers": headers}
            await send(message)

        return send_with_nonce

    async def _refuse(self, scope: Scope, send: Send, error: DpopError) -> None:
        self._audit.request(scope).refused(401, f"dpop_{error.reason}")
        nonce = self._nonces.current() if self._nonces is not None else None
        await send_dpop_refusal(send, error, nonce)

    async def _refuse_token(self, scope: Scope, send: Send, error: TokenError) -> None:
        reason = error.reason
        description = f"{reason}: {DESCRIPTIONS.get(reason, 'the token was refused')}"
        if reason == "revocation_unavailable":
            self._audit.request(scope).refused(503, reason)
            message = f"{description}; retry in {RETRY_AFTER_SECONDS} s"
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            await send_json(send, 503, jsonrpc_error(None, INTERNAL_ERROR, message), headers=retry)
            return
        self._audit.request(scope).refused(401, reason)
        payload = {"error": "invalid_token", "error_description": description}
        await send_json(send, 401, payload, headers=dpop_challenge("invalid_token", description))
