"""DPoP for Python clients (RFC 9449): an httpx `Auth` that signs a fresh proof into each request.

The `mcp` Python client's streamable-HTTP transport takes an `httpx2.AsyncClient`
(the SDK's fork of httpx), so `DPoPAuth` is an `httpx2.Auth`; `HttpxDPoPAuth`
is the same for plain `httpx`. Each request gets `Authorization: DPoP <token>`
and a `DPoP` proof (typ dpop+jwt, EdDSA for an Ed25519 key, ES256 for P-256;
htm, htu = the request URL without query or fragment, iat, a random jti, ath).
A 401 or 400 that asks for a nonce (`DPoP-Nonce` header with
`use_dpop_nonce`) is retried once with that nonce; a `DPoP-Nonce` on any
response is kept for the next request to that origin.

    key = Ed25519PrivateKey.generate()   # keep it: the token is bound to it
    jkt = thumbprint(public_jwk(key))    # what the issuer binds (cnf.jkt)
    async with httpx2.AsyncClient(auth=DPoPAuth(key, token)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as session: ...

`DPoPClientCredentialsProvider` gets the bound token itself: it is the `mcp`
SDK's `ClientCredentialsOAuthProvider` (discovery from the server's 401, the
issuer's metadata, client_secret_basic) whose token request also carries a
proof (htm POST, htu the token endpoint), and whose MCP requests carry
`Authorization: DPoP <token>` and a fresh proof, with the same nonce retry.

    provider = DPoPClientCredentialsProvider(
        key, server_url=url, storage=storage, client_id="mcpw_...", client_secret=secret,
        issuer="https://auth.example.com")
    async with httpx2.AsyncClient(auth=provider) as http: ...
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Literal

import httpx
import httpx2
from mcp.client.auth import OAuthTokenError, TokenStorage
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

from mcp_warden.tokens.dpop import PrivateKey, public_jwk, sign_proof, thumbprint

AuthMethod = Literal["client_secret_basic", "client_secret_post"]

__all__ = [
    "DPoPAuth",
    "DPoPClientCredentialsProvider",
    "HttpxDPoPAuth",
    "PrivateKey",
    "public_jwk",
    "thumbprint",
]


class _Signer:
    """The client state both Auth classes share: key, token, the last nonce per origin."""

    def __init__(
        self,
        key: PrivateKey,
        token: str | Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._token = token
        self._clock = clock
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()
        self.jkt = thumbprint(public_jwk(key))

    def headers(self, method: str, origin: str, path: str) -> dict[str, str]:
        """Authorization and a fresh DPoP proof for one request."""
        token = self._token() if callable(self._token) else self._token
        with self._lock:
            nonce = self._nonces.get(origin)
        proof = sign_proof(
            self._key,
            method=method,
            url=f"{origin}{path}",
            now=self._clock(),
            access_token=token,
            nonce=nonce,
        )
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    def remember(self, origin: str, status: int, nonce: str | None, challenge: str) -> bool:
        """Keep the response's nonce; True when the server asked to retry with it."""
        if not nonce:
            return False
        with self._lock:
            self._nonces[origin] = nonce
        return (status == 401 and "use_dpop_nonce" in challenge) or status == 400


def _origin(url: httpx.URL | httpx2.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


class _Proofs:
    """What `DPoPAuth` and `HttpxDPoPAuth` share: the signer and the flow of one request.

    The two differ only in the HTTP library (`httpx2`, which the `mcp` SDK uses,
    or `httpx`), whose requests and responses have the same shape.
    """

    def __init__(
        self,
        key: PrivateKey,
        token: str | Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`token` is the bound access token, or a function that returns the current one."""
        self._signer = _Signer(key, token, clock=clock)
        self.jkt = self._signer.jkt
        """The key's RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it."""

    def _flow(self, request: Any) -> Generator[Any, Any, None]:
        origin = _origin(request.url)
        request.headers.update(self._signer.headers(request.method, origin, request.url.path))
        response = yield request
        asked = self._signer.remember(
            origin,
            response.status_code,
            response.headers.get("dpop-nonce"),
            response.headers.get("www-authenticate", ""),
        )
        if asked:  # once: a new jti and the server's nonce
            request.headers.update(self._signer.headers(request.method, origin, request.url.path))
            response = yield request
            self._signer.remember(origin, 200, response.headers.get("dpop-nonce"), "")


class DPoPAuth(_Proofs, httpx2.Auth):
    """DPoP proofs for an `httpx2` client (the `mcp` SDK's); see the module docstring."""

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        yield from self._flow(request)


class HttpxDPoPAuth(_Proofs, httpx.Auth):
    """The same as `DPoPAuth`, for a plain `httpx` client."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield from self._flow(request)


class DPoPClientCredentialsProvider(ClientCredentialsOAuthProvider):
    """The `mcp` SDK's client_credentials provider, getting and using DPoP-bound tokens.

    Takes `ClientCredentialsOAuthProvider`'s arguments, by name, after the DPoP `key`.
    The token request carries a proof for the token endpoint; a token answered
    with any `token_type` but DPoP is refused (`OAuthTokenError`), as the
    server would refuse it as DPoP anyway. It is kept in `storage` with the
    SDK's `token_type` "Bearer" (the only one its model allows); this provider
    always sends it as `Authorization: DPoP` with a fresh proof, and retries
    once with the server's nonce when asked (`use_dpop_nonce`).
    """

    def __init__(
        self,
        key: PrivateKey,
        *,
        server_url: str,
        storage: TokenStorage,
        client_id: str,
        client_secret: str,
        token_endpoint_auth_method: AuthMethod = "client_secret_basic",  # noqa: S107
        scope: str | None = None,
        issuer: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            server_url, storage, client_id, client_secret, token_endpoint_auth_method, scope, issuer
        )
        self._key = key
        self._clock = clock
        self._signer = _Signer(key, self._access_token, clock=clock)
        self.jkt = self._signer.jkt
        """The key's RFC 7638 thumbprint: the `cnf.jkt` of the tokens it gets."""

    def _access_token(self) -> str:
        tokens = self.context.current_tokens
        return tokens.access_token if tokens is not None else ""

    async def _exchange_token_client_credentials(self) -> httpx2.Request:
        request = await super()._exchange_token_client_credentials()
        url = _origin(request.url) + request.url.path
        request.headers["DPoP"] = sign_proof(self._key, method="POST", url=url, now=self._clock())
        return request

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        if response.status_code in {200, 201}:
            try:
                body = json.loads(await response.aread())
            except ValueError as exc:
                raise OAuthTokenError("Invalid token response: not JSON") from exc
            if not isinstance(body, dict) or str(body.get("token_type", "")).lower() != "dpop":
                raise OAuthTokenError(
                    "the authorization server answered the DPoP proof with a token that is "
                    "not DPoP-bound (token_type is not DPoP)"
                )
            response = httpx2.Response(response.status_code, json={**body, "token_type": "Bearer"})
        await super()._handle_token_response(response)

    def _add_auth_header(self, request: httpx2.Request) -> None:
        if self.context.current_tokens and self.context.current_tokens.access_token:
            origin = _origin(request.url)
            request.headers.update(self._signer.headers(request.method, origin, request.url.path))

    async def _auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """The SDK's flow; a response to the MCP request that asks for a nonce is retried once."""
        flow = super()._auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                origin = _origin(outgoing.url)
                response = yield outgoing
                if outgoing is request and request.headers.get("dpop"):
                    asked = self._signer.remember(
                        origin,
                        response.status_code,
                        response.headers.get("dpop-nonce"),
                        response.headers.get("www-authenticate", ""),
                    )
                    if asked:  # a new jti and the server's nonce
                        self._add_auth_header(request)
                        response = yield request
                        nonce = response.headers.get("dpop-nonce")
                        self._signer.remember(origin, 200, nonce, "")
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            return
        finally:
            await flow.aclose()
