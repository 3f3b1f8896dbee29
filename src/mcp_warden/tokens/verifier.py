"""Verifying access tokens: strict, about one Ed25519 verify when new, a dict lookup when seen.

Where PyJWT is used and where it is not. PyJWT mints (issuer) and turns JWKs
into keys (jwks). This hot path parses the compact JWS itself, for two reasons
measured and tested here: `jwt.decode` costs 1.6-1.8x a raw Ed25519 verify
(the goal is 1.25x), and it accepts what we must refuse (padded or
non-canonical base64url, `exp` as a numeric string or float, `true` as an
integer, typ unchecked, tools not a list). The tests use PyJWT as an oracle: every token this
verifier accepts, `jwt.decode` pinned to EdDSA accepts with the same claims.

Order of checks for a token not seen before (first failure wins):
size (8 KiB) and shape, before any decoding -> header: alg EdDSA, typ at+jwt,
no crit, kid shaped like an RFC 7638 thumbprint -> key by kid (one
rate-limited JWKS reload for an unknown kid; jku/x5u/jwk/x5c are never read)
-> Ed25519 signature over the exact received bytes -> payload JSON -> claims:
present, JSON types exact, iss and aud equal, time, lifetime -> denylist.

Decisions:
- exp has no leeway: a token is refused from the second its exp is reached
  (exp equal to now included). The denylist keeps a revoked jti only until
  its exp, so accepting a token after exp could accept a revoked one.
  The leeway (MCP_TOKEN_LEEWAY) tolerates issuer clocks ahead of ours: nbf/iat
  up to `leeway` seconds in the future.
- NumericDates must be JSON integers (not floats, strings or booleans); our
  issuer writes integers and Claims holds ints.
- aud must be one string equal to the expected audience. A list is refused
  (invalid_claim): a token good at several servers leaks to all of them.
- typ is compared as RFC 7515 section 4.1.9 says (case-insensitive, with an
  optional "application/" prefix), as npm jose does; `JWT` or none is refused.

A cache of verified tokens, keyed by the SHA-256 of the token (it keeps no
bearer token), makes a repeated token cost a hash and a dict lookup. Each use
still checks exp, that the kid is still published (a retired key's tokens go
at once, cached or not) and the denylist.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from mcp_warden.config import DEFAULTS, Settings
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.errors import Reason, TokenError
from mcp_warden.tokens.jwks import JwksSource, open_jwks
from mcp_warden.tokens.jws import (
    MAX_TOKEN_CHARS,
    MalformedError,
    decode_segment,
    ed25519_verify,
    json_object,
    split_compact,
)
from mcp_warden.tokens.revocation import Denylist
from mcp_warden.tokens.toolnames import TOOL_NAME

KID = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 thumbprint
REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "exp", "jti", "tools")
MAX_SHARED = 256  # distinct headers / tool lists remembered


def _refuse(reason: Reason, message: str) -> NoReturn:
    raise TokenError(reason, message)


class Verifier:
    """Verifies access tokens against a JWKS, an issuer, an audience and a denylist."""

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        denylist: Denylist,
        leeway: int = DEFAULTS.token_leeway,
        max_ttl: int = DEFAULTS.token_max_ttl,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._denylist = denylist
        self._leeway = leeway
        self._max_ttl = max_ttl
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[bytes, Claims] = {}  # sha256(token) -> claims, oldest first
        self._headers: dict[str, str] = {}  # accepted header segment -> its kid
        self._toolsets: dict[tuple[str, ...], frozenset[str]] = {}  # tools claim -> shared set
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, denylist: Denylist) -> Verifier:
        """A verifier for MCP_JWKS, MCP_TOKEN_ISSUER, MCP_TOKEN_AUDIENCE and their limits."""
        return cls(
            open_jwks(
                settings.jwks,
                refresh_seconds=settings.jwks_refresh_seconds,
                max_age_seconds=settings.jwks_max_age_seconds,
            ),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            denylist=denylist,
            leeway=settings.token_leeway,
            max_ttl=settings.token_max_ttl,
        )

    def close(self) -> None:
        """Release the JWKS source (an https source holds a connection pool)."""
        self._jwks.close()

    # -- public checks -----------------------------------------------------

    def verify(self, token: str) -> Claims:
        """The claims of a valid token, or TokenError with the reason it is refused."""
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            _refuse("malformed", "not a token: longer than 8 KiB or not ASCII")
        raw = token.encode("ascii")
        digest = hashlib.sha256(raw).digest()
        now = self._clock()
        claims = self._cache.get(digest)
        if claims is not None:
            if now < claims.exp and claims.kid in self._jwks.current():
                self._check_revoked(claims)
                return claims
            self._cache.pop(digest, None)  # expired or key retired: decide afresh below
        claims = self._verify_new(token, raw, now)
        if self._cache_size > 0:
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)), None)
                self._cache[digest] = claims
        return claims

    def check_still_valid(self, claims: Claims) -> None:
        """Re-check a token verified earlier (long stdio sessions): exp, kid, denylist."""
        if claims.exp <= self._clock():
            _refuse("expired", f"token expired at {claims.exp}")
        if claims.kid not in self._jwks.current():
            _refuse("unknown_key", f"signing key {claims.kid} is no longer published")
        self._check_revoked(claims)

    # -- the full check ----------------------------------------------------

    def _verify_new(self, token: str, raw: bytes, now: float) -> Claims:
        try:
            header_b64, payload_b64, signature_b64 = split_compact(token)
        except MalformedError as exc:
            _refuse("malformed", str(exc))
        kid = self._headers.get(header_b64) or self._check_header(header_b64)
        keys = self._jwks.current()
        key = keys.get(kid) or self._jwks.refresh_unknown_kid().get(kid)
        if key is None:
            _refuse("unknown_key", f"no trusted key has kid {kid}")
        try:
            signature = decode_segment(signature_b64)
            payload = decode_segment(payload_b64)
        except MalformedError as exc:
            _refuse("malformed", str(exc))
        signing_input = raw[: len(header_b64) + 1 + len(payload_b64)]
        if not ed25519_verify(key, signature, signing_input):
            _refuse("bad_signature", f"signature does not verify under key {kid}")
        claims = self._check_claims(_json_object(payload, "payload"), kid, now)
        self._check_revoked(claims)
        return claims

    def _check_header(self, header_b64: str) -> str:
        """Validate a protected header; remember it (bounded) and return its kid."""
        try:
            header = _json_object(decode_segment(header_b64), "header")
        except MalformedError as exc:
            _refuse("malformed", str(exc))
        alg = header.get("alg")
        if alg != "EdDSA":
            shown = alg[:20] if isinstance(alg, str) else type(alg).__name__  # no str() of a tree
            _refuse("unsupported_algorithm", f"alg {shown!r} is not accepted; only EdDSA")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "at+jwt":
            _refuse("wrong_type", "typ must be at+jwt (an access token)")
        if "crit" in header or "b64" in header:
            _refuse("malformed", "critical header extensions (crit, b64) are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID.fullmatch(kid):
            _refuse("malformed", "kid missing or not an RFC 7638 thumbprint")
        with self._lock:
            if len(self._headers) >= MAX_SHARED:
                self._headers.clear()
            self._headers[header_b64] = kid
        return kid

    def _check_claims(self, doc: dict[str, Any], kid: str, now: float) -> Claims:
        for name in REQUIRED_CLAIMS:
            if name not in doc:
                _refuse("missing_claim", f"required claim {name} is missing")
        iss = _string(doc, "iss")
        sub = _string(doc, "sub")
        aud = _string(doc, "aud")
        jti = _string(doc, "jti")
        iat = _integer(doc, "iat")
        exp = _integer(doc, "exp")
        nbf = _integer(doc, "nbf") if "nbf" in doc else None
        tools = doc["tools"]
        if type(tools) is not list:
            _refuse("invalid_claim", "tools must be a list of MCP tool names")
        for tool in tools:
            if type(tool) is not str or not TOOL_NAME.fullmatch(tool):
                _refuse("invalid_claim", "tools must be a list of MCP tool names")
        if iss != self._issuer:
            _refuse("wrong_issuer", "token issued by another issuer")
        if aud != self._audience:
            _refuse("wrong_audience", "token is for another audience")
        if exp <= now:
            _refuse("expired", f"token expired at {exp}")
        if iat > now + self._leeway or (nbf is not None and nbf > now + self._leeway):
            _refuse("not_yet_valid", "token is not valid yet (iat or nbf in the future)")
        if exp <= iat:
            _refuse("invalid_claim", "exp is not after iat")
        if exp - iat > self._max_ttl:
            _refuse("lifetime_too_long", f"token lifetime above the maximum {self._max_ttl} s")
        # iss and aud are equal to our own strings: store those, shared by every cache entry
        toolset = self._shared_toolset(tools)
        jkt = _cnf_jkt(doc["cnf"]) if "cnf" in doc else None
        return Claims(self._issuer, sub, self._audience, iat, nbf, exp, jti, toolset, kid, jkt)

    def _shared_toolset(self, tools: list[str]) -> frozenset[str]:
        """One frozenset per distinct tool list (bounded), so cache entries stay small."""
        key = tuple(tools)
        toolset = self._toolsets.get(key)
        if toolset is None:
            toolset = frozenset(tools)
            with self._lock:
                if len(self._toolsets) >= MAX_SHARED:
                    self._toolsets.clear()
                self._toolsets[key] = toolset
        return toolset

    def _check_revoked(self, claims: Claims) -> None:
        if self._denylist.is_revoked(claims.jti, claims.sub, claims.iat):
            _refuse("revoked", f"token {claims.jti} (or every token of its subject) was revoked")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        return json_object(data, what)
    except MalformedError as exc:
        _refuse("malformed", str(exc))


def _cnf_jkt(cnf: object) -> str:
    """The thumbprint of a `cnf` claim (RFC 9449 section 6.1): {"jkt": <43 base64url>}."""
    if type(cnf) is not dict or set(cnf) != {"jkt"}:
        _refuse("invalid_claim", "cnf must be an object with jkt only (DPoP binding)")
    jkt = cnf["jkt"]
    if type(jkt) is not str or not KID.fullmatch(jkt):
        _refuse("invalid_claim", "cnf.jkt must be an RFC 7638 SHA-256 thumbprint")
    return jkt


def _string(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if type(value) is not str or not value:
        _refuse("invalid_claim", f"{name} must be a non-empty string")
    return value


def _integer(doc: dict[str, Any], name: str) -> int:
    value = doc[name]
    if type(value) is not int:
        _refuse("invalid_claim", f"{name} must be an integer NumericDate")
    return value
