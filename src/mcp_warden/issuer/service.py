"""The issuer's decisions, apart from HTTP: who the client is, what it gets, what it may revoke.

Every method here is synchronous and may block (the registry, the replay
cache, the denylist): the HTTP layer (app.py) runs them in a worker thread.
Each raises `OAuthError` with the RFC 6749 section 5.2 code, a one-line
description for the client and a stable audit word.

Client authentication (RFC 6749 section 2.3, RFC 7523 section 2.2): exactly
one of HTTP Basic, `client_secret` in the body, or `client_assertion`; two
at once are `invalid_request`, none is `invalid_client`. An unknown client,
a removed one and a wrong secret get the same description, so the token
endpoint does not tell which client_ids exist; the audit line tells the
operator which it was.

Token request (client_credentials): granted tools = the `scope` tools the
client may have (no `scope`: all of them; none in common: `invalid_scope`);
`resource` must be one of the MCP servers this issuer serves
(MCP_ISSUER_RESOURCES, default MCP_TOKEN_AUDIENCE; it may be left out when
there is only one), else `invalid_target`; lifetime = the client's TTL,
at most MCP_TOKEN_MAX_TTL. The token is `token mint`'s at+jwt with `sub` =
`client_id` = the client and `scope` = the granted tools (RFC 9068).

DPoP (RFC 9449 section 5): a token request with one `DPoP` header whose proof
verifies (tokens/dpop.verify_proof: typ dpop+jwt, EdDSA or ES256, a public
jwk, htm POST, htu the token endpoint, iat at most MCP_DPOP_MAX_AGE_SECONDS
in the past and MCP_DPOP_FUTURE_SECONDS ahead, as `serve` checks) and whose
(thumbprint, jti) the registry's replay cache has not seen, at any issuer
process, gets a bound token: `cnf: {"jkt": thumbprint}`, `token_type: DPoP`.
A bad proof, two DPoP headers, or no proof from a client registered with
`--require-dpop` is `invalid_dpop_proof` (400). The proof is checked after
client authentication (an unauthenticated request learns nothing of it) and
its jti is spent only when the token is about to be minted.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import ExpiredSignatureError, PyJWTError

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.issuer.assertions import (
    ASSERTION_TYPE,
    assertion_algorithm,
    claimed_client_id,
    verify_assertion,
)
from mcp_warden.issuer.clients import ALGORITHMS, MAX_CLIENT_ID_CHARS, Client, hash_secret
from mcp_warden.issuer.keys import IssuerKeys
from mcp_warden.issuer.oauth import OAuthError, basic_credentials, invalid_client, invalid_request
from mcp_warden.issuer.registry import Registry, RegistryUnavailable, open_registry
from mcp_warden.tokens.dpop import ALGORITHMS as DPOP_ALGORITHMS
from mcp_warden.tokens.dpop import DpopError, Proof, verify_proof
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.jws import MalformedError, decode_segment, json_object
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation import Denylist, RevocationStoreError, open_denylist
from mcp_warden.tokens.toolnames import is_tool_name
from mcp_warden.urls import redacted

log = logging.getLogger("mcp_warden.issuer")

GRANT_TYPE = "client_credentials"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
RETRY_AFTER_SECONDS = 5
SCOPES_CACHE_SECONDS = 1.0
DPOP_REPLAY_PREFIX = "dpop:"  # replay-cache namespace: client_ids start with mcpw_
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DUMMY_HASH = hash_secret("no client has this secret")
_FAILED = (
    "client authentication failed: unknown client_id or wrong credentials; check both "
    "(`mcp-warden clients list` shows the registered ids)"
)


@dataclass(frozen=True, slots=True)
class Issued:
    """A token the endpoint answers with, and what its audit line says."""

    client_id: str
    access_token: str
    tools: tuple[str, ...]
    jti: str
    expires_in: int
    audience: str
    jkt: str | None = None  # the DPoP key thumbprint a bound token names (cnf.jkt)

    @property
    def token_type(self) -> str:
        return "DPoP" if self.jkt is not None else "Bearer"

    def response(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": " ".join(self.tools),
        }


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a revocation request did, for its audit line (the answer is always an empty 200)."""

    client_id: str
    jti: str | None
    outcome: str  # revoked | ignored
    reason: str | None = None


def check_issuer_url(url: str) -> str:
    """MCP_TOKEN_ISSUER as the service's issuer identifier (RFC 8414 section 2), or ConfigError.

    https (served by this process, or by a TLS proxy in front of it), or plain
    http on a loopback host only (a local test); no user, query or fragment.
    """
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"MCP_TOKEN_ISSUER={redacted(url)!r} is not the issuer's URL; set it to the https URL "
            "clients reach this service at, e.g. https://auth.example.com"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(
            "MCP_TOKEN_ISSUER must have no user, query or fragment (RFC 8414 section 2); "
            "remove them"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigError(
            f"MCP_TOKEN_ISSUER {redacted(url)} is plain http on a non-loopback host; clients must "
            "reach the issuer over https: set its https URL and serve TLS (--certfile/--keyfile) "
            "or run behind a TLS proxy (--behind-tls-proxy)"
        )
    return url


class Issuer:
    """The issuer service's state for one process: settings, registry, keys, denylist."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry,
        keys: IssuerKeys,
        denylist: Denylist,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.issuer = settings.token_issuer
        base = self.issuer.rstrip("/")
        self.base_path = urlsplit(base).path
        self.token_endpoint = base + "/token"
        self.revocation_endpoint = base + "/revoke"
        self.jwks_uri = base + "/jwks.json"
        self.authorization_endpoint = base + "/authorize"
        self.resources = settings.issuer_resources or (settings.token_audience,)
        self.proof_window = (settings.dpop_max_age_seconds, settings.dpop_future_seconds)
        # RFC 7523: the issuer identifier or the token endpoint; a root issuer with or without "/".
        audiences = [self.issuer, self.token_endpoint]
        if urlsplit(self.issuer).path in ("", "/"):
            audiences += [base, base + "/"]
        self.assertion_audiences = tuple(dict.fromkeys(audiences))
        self.registry = registry
        self.keys = keys
        self.denylist = denylist
        self._clock = clock
        self._monotonic = monotonic
        self._scopes: tuple[float, list[str]] = (float("-inf"), [])
        self._scopes_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> Issuer:
        """Check every setting and open every store; ConfigError names what is wrong."""
        check_issuer_url(settings.token_issuer)
        for resource in settings.issuer_resources or (settings.token_audience,):
            if urlsplit(resource).scheme not in ("http", "https") or not urlsplit(resource).netloc:
                raise ConfigError(
                    f"MCP_ISSUER_RESOURCES holds {redacted(resource)!r}, not an MCP server URL; "
                    "list the URLs clients use (each token's aud), comma-separated"
                )
        if settings.revocation_url == "memory://":
            raise ConfigError(
                "the issuer cannot use MCP_REVOCATION_URL=memory://: revocations must reach "
                "the servers; set it to their sqlite:////absolute/path or redis://host:port/db"
            )
        with contextlib.ExitStack() as undo:
            keys = IssuerKeys(
                KeyDir(settings.keys_dir), refresh_seconds=settings.jwks_refresh_seconds
            )
            registry = open_registry(settings)
            undo.callback(registry.close)
            denylist = open_denylist(settings, follow=False)
            undo.callback(denylist.close)
            undo.pop_all()
        return cls(settings, registry=registry, keys=keys, denylist=denylist)

    def close(self) -> None:
        try:
            self.registry.close()
        finally:
            self.denylist.close()

    # -- metadata ----------------------------------------------------------------

    def metadata(self) -> dict[str, object]:
        """RFC 8414 authorization server metadata (see the README for why each field is there)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "revocation_endpoint": self.revocation_endpoint,
            "response_types_supported": [],
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "scopes_supported": self.scopes_supported(),
            "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        }

    def scopes_supported(self) -> list[str]:
        """Every tool some client may be granted (read at most once a second)."""
        now = self._monotonic()
        when, scopes = self._scopes
        if now - when < SCOPES_CACHE_SECONDS:
            return scopes
        with self._scopes_lock:
            try:
                scopes = sorted({t for c in self.registry.all() for t in c.tools})
            except RegistryUnavailable as exc:
                log.warning("scopes_supported not refreshed: %s", exc)
                return self._scopes[1]
            self._scopes = (now, scopes)
        return scopes

    # -- client authentication ---------------------------------------------------

    def claimed_client(self, form: Mapping[str, str], authorization: str | None) -> str | None:
        """The client_id a request claims before it is authenticated (rate limits, audit)."""
        if authorization is not None:
            with contextlib.suppress(ValueError):
                return basic_credentials(authorization)[0]
        if "client_id" in form:
            return form["client_id"]
        assertion = form.get("client_assertion")
        return claimed_client_id(assertion) if assertion else None

    def authenticate(self, form: Mapping[str, str], authorization: str | None) -> Client:
        used = [
            method
            for method, present in (
                ("client_secret_basic", authorization is not None),
                ("client_secret_post", "client_secret" in form),
                ("private_key_jwt", "client_assertion" in form or "client_assertion_type" in form),
            )
            if present
        ]
        if len(used) > 1:
            raise invalid_request(
                f"use one client authentication method, not {' and '.join(used)}",
                "several_auth_methods",
            )
        if not used:
            raise invalid_client(
                "authenticate the client with client_secret_basic, client_secret_post or "
                "private_key_jwt",
                "no_client_authentication",
                client_id=form.get("client_id"),
                basic=True,
            )
        if used[0] == "client_secret_basic":
            try:
                client_id, secret = basic_credentials(authorization or "")
            except ValueError:
                raise invalid_client(
                    "the Authorization header must be HTTP Basic of "
                    "urlencoded(client_id):urlencoded(client_secret)",
                    "malformed_basic",
                    client_id=None,
                    basic=True,
                ) from None
            if form.get("client_id", client_id) != client_id:
                raise invalid_request(
                    "client_id in the body is not the one in the Authorization header",
                    "client_id_mismatch",
                )
            return self._check_secret(client_id, secret, basic=True)
        if used[0] == "client_secret_post":
            posted = form.get("client_id")
            if posted is None:
                raise invalid_client(
                    "client_secret_post needs client_id in the body too",
                    "no_client_id",
                    client_id=None,
                    basic=False,
                )
            return self._check_secret(posted, form["client_secret"], basic=False)
        return self._check_assertion(form)

    def _lookup(self, client_id: str) -> Client | None:
        if not client_id or len(client_id) > MAX_CLIENT_ID_CHARS:
            return None
        return self.registry.get(client_id)

    def _check_secret(self, client_id: str, secret: str, *, basic: bool) -> Client:
        client = self._lookup(client_id)
        if client is None:
            hmac.compare_digest(_DUMMY_HASH, hash_secret(secret))  # the same work as a known id
            raise invalid_client(_FAILED, "unknown_client", client_id=client_id, basic=basic)
        if client.secret_hash is None:
            raise invalid_client(
                "this client authenticates with private_key_jwt; send a client_assertion",
                "wrong_auth_method",
                client_id=client_id,
                basic=basic,
            )
        if not client.check_secret(secret):
            raise invalid_client(_FAILED, "invalid_secret", client_id=client_id, basic=basic)
        return client

    def _check_assertion(self, form: Mapping[str, str]) -> Client:
        named = form.get("client_id")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise invalid_client(
                f"client_assertion_type must be {ASSERTION_TYPE}",
                "assertion_type",
                client_id=named,
                basic=False,
            )
        assertion = form.get("client_assertion")
        if assertion is None:
            raise invalid_client(
                "private_key_jwt needs a client_assertion",
                "assertion_missing",
                client_id=named,
                basic=False,
            )
        claimed = claimed_client_id(assertion)
        assertion_algorithm(assertion, named or claimed)  # none, HS256...: refused unverified
        client_id = named or claimed
        client = self._lookup(client_id) if client_id is not None else None
        if client is None:
            raise invalid_client(_FAILED, "unknown_client", client_id=client_id, basic=False)
        now = int(self._clock())
        jti, exp = verify_assertion(
            assertion,
            client,
            audiences=self.assertion_audiences,
            now=now,
            leeway=self.settings.token_leeway,
        )
        if not self.registry.use_assertion(client.client_id, jti, exp, now):
            raise invalid_client(
                "this client_assertion was already used; sign a new one, with a fresh jti, "
                "for every request",
                "assertion_replayed",
                client_id=client.client_id,
                basic=False,
            )
        return client

    # -- the token endpoint --------------------------------------------------------

    def issue(
        self, form: Mapping[str, str], authorization: str | None, dpop: Sequence[str] = ()
    ) -> Issued:
        """A token for an authenticated client_credentials request, or OAuthError.

        `dpop` holds the values of the request's DPoP headers (RFC 9449: at most one).
        """
        with _unavailable_as_503():
            client = self.authenticate(form, authorization)
            try:
                proof = self._proof(client, dpop)
                return self._grant(client, form, proof)
            except OAuthError as exc:
                exc.client_id = client.client_id
                exc.authenticated = True
                raise

    def _proof(self, client: Client, dpop: Sequence[str]) -> Proof | None:
        """The verified DPoP proof of a token request; None when there is none and may be none."""
        if not dpop:
            if client.require_dpop:
                raise OAuthError(
                    "invalid_dpop_proof",
                    "this client gets DPoP-bound tokens only: send a DPoP proof (RFC 9449 "
                    f"section 4) for POST {self.token_endpoint}",
                    "dpop_required",
                )
            return None
        if len(dpop) > 1:
            raise _bad_proof(DpopError("multiple_proofs"))
        try:
            return verify_proof(
                dpop[0],
                method="POST",
                url=self.token_endpoint,
                access_token=None,
                now=self._clock(),
                window=self.proof_window,
            )
        except DpopError as exc:
            raise _bad_proof(exc) from None

    def _spend(self, proof: Proof) -> None:
        """Record the proof's jti in the shared replay cache; invalid_dpop_proof if seen before."""
        now = int(self._clock())
        keep_until = int(proof.iat + self.proof_window[0]) + 1  # then its iat is out of the window
        if not self.registry.use_assertion(
            DPOP_REPLAY_PREFIX + proof.jkt, proof.jti, max(keep_until, now + 1), now
        ):
            raise _bad_proof(DpopError("replayed"))

    def _grant(self, client: Client, form: Mapping[str, str], proof: Proof | None) -> Issued:
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise invalid_request("grant_type is required: client_credentials", "no_grant_type")
        if grant_type != GRANT_TYPE:
            raise OAuthError(
                "unsupported_grant_type",
                "this issuer supports grant_type=client_credentials only",
                "unsupported_grant_type",
            )
        tools = self._granted(client, form.get("scope"))
        audience = self._audience(form.get("resource"))
        ttl = min(client.ttl, self.settings.token_max_ttl)
        if proof is not None:
            self._spend(proof)
        token = mint(
            self.settings.keys_dir,
            issuer=self.issuer,
            sub=client.client_id,
            tools=tools,
            ttl=ttl,
            audience=audience,
            max_ttl=self.settings.token_max_ttl,
            clock=self._clock,
            extra_claims={"client_id": client.client_id, "scope": " ".join(tools)},
            signing_key=self.keys.signing_key(),
            dpop_jkt=proof.jkt if proof is not None else None,
        )
        jkt = proof.jkt if proof is not None else None
        return Issued(client.client_id, token, tools, _jti_of(token), ttl, audience, jkt)

    def _granted(self, client: Client, scope: str | None) -> tuple[str, ...]:
        if scope is None:
            return client.tools
        requested = scope.split(" ")
        if any(not is_tool_name(name) for name in requested):
            raise OAuthError(
                "invalid_scope",
                "scope must be tool names separated by single spaces",
                "invalid_scope",
            )
        granted = tuple(sorted(set(requested) & set(client.tools)))
        if not granted:
            raise OAuthError(
                "invalid_scope",
                "none of the requested tools is allowed for this client; it may request: "
                + " ".join(client.tools),
                "invalid_scope",
            )
        return granted

    def _audience(self, resource: str | None) -> str:
        if resource is None:
            if len(self.resources) == 1:
                return self.resources[0]
            raise OAuthError(
                "invalid_target",
                "this issuer serves several MCP servers: give resource (RFC 8707), the URL of "
                "the one the token is for",
                "no_resource",
            )
        if resource not in self.resources:
            raise OAuthError(
                "invalid_target",
                "resource is not an MCP server this issuer serves; use the server's URL as its "
                "protected resource metadata names it",
                "unknown_resource",
            )
        return resource

    # -- the revocation endpoint (RFC 7009) ---------------------------------------

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> Revoked:
        """Revoke one of the client's own tokens in the shared denylist."""
        with _unavailable_as_503():
            client = self.authenticate(form, authorization)
            token = form.get("token")
            if token is None:
                raise OAuthError(
                    "invalid_request",
                    "give the token to revoke",
                    "no_token",
                    client_id=client.client_id,
                    authenticated=True,
                )
            claims = self._our_token(token)
            if claims is None:
                # RFC 7009 section 2.2: an invalid or expired token is answered 200 all the same.
                return Revoked(client.client_id, None, "ignored", "not_a_valid_token")
            if claims.get("client_id") != client.client_id:
                raise OAuthError(
                    "unauthorized_client",
                    "this token was not issued to this client; a client revokes its own tokens",
                    "not_own_token",
                    client_id=client.client_id,
                    authenticated=True,
                )
            jti, exp = claims["jti"], claims["exp"]
            self.denylist.revoke_jti(jti, exp)
        return Revoked(client.client_id, jti, "revoked")

    def _our_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed and that has not expired, else None."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys.public_keys().get(kid) if isinstance(kid, str) else None
            if key is None:
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "jti", "sub", "iat"]},
            )
        except (ExpiredSignatureError, PyJWTError):
            return None
        if not isinstance(claims["jti"], str) or type(claims["exp"]) is not int:
            return None
        return claims


def _bad_proof(exc: DpopError) -> OAuthError:
    """invalid_dpop_proof (RFC 9449 section 5): the fixed description of the reason, no proof."""
    return OAuthError("invalid_dpop_proof", str(exc), f"dpop_{exc.reason}")


@contextlib.contextmanager
def _unavailable_as_503() -> Any:
    """A registry or denylist that does not answer: 503 temporarily_unavailable, Retry-After."""
    try:
        yield
    except (RegistryUnavailable, RevocationStoreError) as exc:
        log.warning("request refused, a store is unavailable: %s", exc)
        raise OAuthError(
            "temporarily_unavailable",
            f"the issuer cannot reach its client registry or revocation list; retry in "
            f"{RETRY_AFTER_SECONDS} s",
            "store_unavailable",
            503,
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None


def _jti_of(token: str) -> str:
    """The jti of a token we just minted (for the audit line)."""
    try:
        claims = json_object(decode_segment(token.split(".")[1]), "payload")
    except (MalformedError, IndexError):  # pragma: no cover - we minted it
        return ""
    return str(claims.get("jti", ""))
