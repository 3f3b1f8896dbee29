"""Minting access tokens: compact JWS signed with the active key in MCP_KEYS_DIR.

The issuer needs only the keys directory, never a server. PyJWT builds and
signs the JWS (header `{"alg":"EdDSA","kid":...,"typ":"at+jwt"}`); this module
decides what goes in it: tools sorted, de-duplicated and each a valid MCP tool
name (no wildcard), a TTL between 1 second and the maximum, 128 random bits
of jti, and iat = nbf = now. A DPoP-bound token (RFC 9449 section 6) carries
`cnf: {"jkt": <RFC 7638 thumbprint>}` of the key its proofs must be signed with.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.config import DEFAULTS
from mcp_warden.errors import WardenError
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.toolnames import is_tool_name

MAX_SUB_CHARS = 256
JTI_BYTES = 16  # 128 bits
# base64url (no padding) of a SHA-256 digest: 43 characters, the last carrying 2 zero bits.
JKT = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


class MintError(WardenError):
    """A mint request that asks for something we will not sign (a usage error)."""

    exit_code = 2


def normalize_tools(tools: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated tool names; MintError on any invalid name or none at all."""
    names = sorted(set(tools))
    bad = [n for n in names if not is_tool_name(n)]
    if bad:
        raise MintError(
            f"invalid tool name {bad[0][:40]!r}: use 1-128 characters of A-Z a-z 0-9 _ - . "
            "(no wildcards)"
        )
    if not names:
        raise MintError("a token must name at least one tool (--tools a,b)")
    return names


def check_jkt(jkt: str) -> str:
    """`jkt` when it is an RFC 7638 SHA-256 JWK thumbprint in base64url, else MintError."""
    if not JKT.fullmatch(jkt):
        raise MintError(
            "the DPoP key thumbprint must be the base64url RFC 7638 SHA-256 thumbprint of the "
            "client's public JWK: 43 characters of A-Z a-z 0-9 _ - (no padding)"
        )
    try:
        digest = base64.urlsafe_b64decode(jkt + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits none
        raise MintError("the DPoP key thumbprint is not base64url") from None
    assert len(digest) == 32  # noqa: S101  (the pattern's length and last character)
    return jkt


def mint(
    keys_dir: Path,
    *,
    issuer: str,
    sub: str,
    tools: Iterable[str],
    ttl: int,
    audience: str,
    max_ttl: int = DEFAULTS.token_max_ttl,
    clock: Callable[[], float] = time.time,
    extra_claims: Mapping[str, object] | None = None,
    signing_key: tuple[str, Ed25519PrivateKey] | None = None,
    dpop_jkt: str | None = None,
) -> str:
    """A compact JWS access token for `sub`, allowed to call `tools` for `ttl` seconds.

    `extra_claims` adds claims that none of ours may override (the issuer service's
    RFC 9068 `client_id` and `scope`); `signing_key` (kid, key) skips reading the
    active key from `keys_dir` (the issuer service keeps it loaded); `dpop_jkt` binds
    the token to that DPoP key (claim `cnf.jkt`).
    """
    if type(ttl) is not int or not 1 <= ttl <= max_ttl:
        raise MintError(f"ttl must be a whole number of seconds from 1 to {max_ttl}")
    if not 1 <= len(sub) <= MAX_SUB_CHARS or not sub.isprintable():
        raise MintError(f"sub must be 1-{MAX_SUB_CHARS} printable characters")
    if not issuer or not audience:
        raise MintError("issuer and audience must not be empty")
    names = normalize_tools(tools)
    if dpop_jkt is not None:
        check_jkt(dpop_jkt)
    kid, key = signing_key or KeyDir(keys_dir, clock=clock).signing_key()
    now = int(clock())
    claims: dict[str, object] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(JTI_BYTES),
        "tools": names,
    }
    if extra_claims:
        clash = sorted(set(extra_claims) & set(claims))
        if clash:
            raise MintError(f"extra claim {clash[0]!r} would override a standard claim")
        claims.update(extra_claims)
    if dpop_jkt is not None:
        if "cnf" in claims:
            raise MintError("give the DPoP binding as dpop_jkt, not as an extra cnf claim")
        claims["cnf"] = {"jkt": dpop_jkt}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "at+jwt", "kid": kid})
