"""Test helpers for tokens: a keys directory with a verifier on a fake clock, and a forger.

`forge` signs any header and claims byte for byte as given (no library in the
way), so tests can build exactly the malformed or hostile token they mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.tokens.jwks import FileJwks
from mcp_warden.tokens.jws import b64url_encode
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier
from tests.support.clock import FakeClock

ISSUER = "mcp-warden"
AUDIENCE = "http://127.0.0.1:8000/mcp"


def b64json(doc: Any) -> str:
    """base64url of compact JSON."""
    return b64url_encode(json.dumps(doc, separators=(",", ":")).encode())


def forge(key: Ed25519PrivateKey, header: dict[str, Any], claims: dict[str, Any] | str) -> str:
    """A compact JWS of exactly this header and claims (a str payload is used as is)."""
    payload = claims if isinstance(claims, str) else json.dumps(claims, separators=(",", ":"))
    signing_input = f"{b64json(header)}.{b64url_encode(payload.encode())}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"


@dataclass
class TokenLab:
    """A keys directory with one active key, a file JWKS, a memory denylist and a verifier."""

    path: Path
    clock: FakeClock = field(default_factory=FakeClock)
    leeway: int = 30
    max_ttl: int = 86_400

    def __post_init__(self) -> None:
        self.keydir = KeyDir(self.path, clock=self.clock.time)
        self.kid = self.keydir.new().kid
        self.denylist = MemoryDenylist(clock=self.clock.time)
        self.jwks = FileJwks(
            self.path / "jwks.json", refresh_seconds=1.0, monotonic=self.clock.monotonic
        )
        self.verifier = Verifier(
            self.jwks,
            issuer=ISSUER,
            audience=AUDIENCE,
            denylist=self.denylist,
            leeway=self.leeway,
            max_ttl=self.max_ttl,
            clock=self.clock.time,
        )

    @property
    def key(self) -> Ed25519PrivateKey:
        return self.keydir.signing_key()[1]

    def header(self, **changes: Any) -> dict[str, Any]:
        """The header our issuer writes, with `changes` (a value of None drops the field)."""
        header = {"alg": "EdDSA", "kid": self.kid, "typ": "at+jwt"}
        return _changed(header, changes)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Valid claims at the lab's now, with `changes` (a value of None drops the claim)."""
        now = int(self.clock.now)
        claims = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": "jti-0001",
            "tools": ["web_search"],
        }
        return _changed(claims, changes)

    def token(
        self,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | str | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """A token signed by the active key (or `key`), valid unless told otherwise."""
        return forge(
            key or self.key,
            self.header() if header is None else header,
            self.claims() if claims is None else claims,
        )

    def rotate(self, *, retire: bool) -> str:
        """Make a new active key (retiring the old one with force) and let the JWKS notice."""
        old = self.kid
        self.kid = self.keydir.new().kid
        if retire:
            self.keydir.retire(old, max_ttl=self.max_ttl, force=True)
        self.clock.mono += 2.0  # past the JWKS stat interval
        return old


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
