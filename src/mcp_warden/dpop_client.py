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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator

import httpx
import httpx2

from mcp_warden.tokens.dpop import PrivateKey, public_jwk, sign_proof, thumbprint

__all__ = ["DPoPAuth", "HttpxDPoPAuth", "PrivateKey", "public_jwk", "thumbprint"]


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


class DPoPAuth(httpx2.Auth):
    """DPoP proofs for an `httpx2` client (the `mcp` SDK's); see the module docstring.

    `token` is the bound access token, or a function that returns the current one.
    """

    def __init__(
        self,
        key: PrivateKey,
        token: str | Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = _Signer(key, token, clock=clock)
        self.jkt = self._signer.jkt
        """The key's RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it."""

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
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


class HttpxDPoPAuth(httpx.Auth):
    """The same as `DPoPAuth`, for a plain `httpx` client.

    `token` is the bound access token, or a function that returns the current one.
    """

    def __init__(
        self,
        key: PrivateKey,
        token: str | Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = _Signer(key, token, clock=clock)
        self.jkt = self._signer.jkt
        """The key's RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
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
