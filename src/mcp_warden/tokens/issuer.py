"""Minting access tokens: compact JWS signed with the active key in MCP_KEYS_DIR.

The issuer needs only the keys directory, never a server. PyJWT builds and
signs the JWS (header `{"alg":"EdDSA","kid":...,"typ":"at+jwt"}`); this module
decides what goes in it: tools sorted, de-duplicated and each a valid MCP tool
name (no wildcard), a TTL between 1 second and the maximum, 128 random bits
of jti, and iat = nbf = now.
"""

from __future__ import annotations

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
) -> str:
    """A compact JWS access token for `sub`, allowed to call `tools` for `ttl` seconds.

    `extra_claims` adds claims that none of ours may override (the issuer service's
    RFC 9068 `client_id` and `scope`); `signing_key` (kid, key) skips reading the
    active key from `keys_dir` (the issuer service keeps it loaded).
    """
    if type(ttl) is not int or not 1 <= ttl <= max_ttl:
        raise MintError(f"ttl must be a whole number of seconds from 1 to {max_ttl}")
    if not 1 <= len(sub) <= MAX_SUB_CHARS or not sub.isprintable():
        raise MintError(f"sub must be 1-{MAX_SUB_CHARS} printable characters")
    if not issuer or not audience:
        raise MintError("issuer and audience must not be empty")
    names = normalize_tools(tools)
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
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "at+jwt", "kid": kid})
