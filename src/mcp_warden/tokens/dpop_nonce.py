"""Server nonces for DPoP (RFC 9449 section 8) that every replica makes and checks alone.

A nonce is base64url(bucket || HMAC-SHA256(key, bucket)[:16]) where bucket is
the number of the current time bucket (`bucket_seconds` long, 8 bytes big
endian). A replica accepts a nonce of the current or the previous bucket, so
a nonce lives between one and two buckets and a proof cannot be made further
in advance; no state is shared but the key.

The key is derived with HKDF-SHA256 from MCP_DPOP_NONCE_KEY, a secret the
operator gives every replica. Why not from the JWKS: the JWKS is public, so a
key derived from it would let anyone mint nonces; and the resource server
holds no private signing key to derive one from. HKDF with a fixed `info`
keeps this key separate from any other use of the same secret.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.tokens.jws import MalformedError, b64url_decode, b64url_encode

MIN_SECRET_CHARS = 32
_INFO = b"mcp-warden DPoP nonce v1"
_MAC_BYTES = 16
_NONCE_BYTES = 8 + _MAC_BYTES


class NonceSource:
    """Makes the current nonce and checks one; `clock` is for tests."""

    def __init__(
        self, secret: str, *, bucket_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"MCP_DPOP_NONCE_KEY must be at least {MIN_SECRET_CHARS} characters; "
                "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'` "
                "and give every replica the same"
            )
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
        self._key = hkdf.derive(secret.encode("utf-8"))
        self._bucket_seconds = bucket_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> NonceSource | None:
        """None unless MCP_DPOP_NONCE=1; then MCP_DPOP_NONCE_KEY is required."""
        if not settings.dpop_nonce:
            return None
        if not settings.dpop_nonce_key:
            raise ConfigError("MCP_DPOP_NONCE=1 needs MCP_DPOP_NONCE_KEY, shared by every replica")
        return cls(settings.dpop_nonce_key, bucket_seconds=settings.dpop_max_age_seconds)

    def _bucket(self) -> int:
        return int(self._clock() // self._bucket_seconds)

    def make(self, bucket: int) -> str:
        """The nonce of time bucket `bucket`."""
        raw = bucket.to_bytes(8, "big")
        mac = hmac.new(self._key, raw, "sha256").digest()[:_MAC_BYTES]
        return b64url_encode(raw + mac)

    def current(self) -> str:
        """The nonce a client should use now."""
        return self.make(self._bucket())

    def check(self, nonce: str | None) -> bool:
        """True for a nonce of the current or the previous bucket."""
        if nonce is None:
            return False
        try:
            raw = b64url_decode(nonce)
        except MalformedError:
            return False
        if len(raw) != _NONCE_BYTES:
            return False
        bucket = int.from_bytes(raw[:8], "big")
        if bucket not in (self._bucket(), self._bucket() - 1):
            return False
        return hmac.compare_digest(nonce, self.make(bucket))
