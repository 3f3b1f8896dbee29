"""The issuer service's view of MCP_KEYS_DIR: the active signing key and the published JWKS.

`mcp-warden keys new` and `keys retire` change the directory while the
service runs. The service checks `state.json` and `jwks.json` (one stat
each) at most once per MCP_JWKS_REFRESH_SECONDS and reloads what changed,
so a new active key signs, and a retired key leaves the published JWKS,
within that interval, with no restart. Between checks the key stays loaded
(reading and parsing its PEM per token would cost more than signing).
A directory that turns unreadable keeps the last good key and set, with a
warning; at start there is none, which is a ConfigError.

The JWKS served is rebuilt from the public keys alone (`parse_jwks` refuses
a document holding a private key, and `public_jwk` writes only kty, crv, x,
kid, alg and use), so nothing private can reach `jwks_uri` even from a
tampered file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mcp_warden.errors import WardenError
from mcp_warden.tokens.jwks import JwksError, parse_jwks, public_jwk
from mcp_warden.tokens.keys import JWKS_FILE, STATE_FILE, KeyDir

log = logging.getLogger("mcp_warden.issuer")

Stamp = tuple[tuple[int, int, int, int, int] | None, ...]


class IssuerKeys:
    """The active signing key and the public JWKS document, reloaded when the directory changes."""

    def __init__(
        self,
        keys: KeyDir,
        *,
        refresh_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = keys
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._signing = keys.signing_key()  # ConfigError / KeysError at start
        self._public, self._document = self._read_jwks()
        self._next_check = monotonic() + refresh_seconds

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        self._maybe_reload()
        return self._signing

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """kid -> key for every published key (verifying tokens handed back for revocation)."""
        self._maybe_reload()
        return self._public

    def jwks_document(self) -> bytes:
        """The JWKS to serve at jwks_uri: public keys only."""
        self._maybe_reload()
        return self._document

    def _maybe_reload(self) -> None:
        if self._monotonic() < self._next_check:
            return
        with self._lock:
            if self._monotonic() < self._next_check:
                return
            self._next_check = self._monotonic() + self._refresh
            stamp = self._stat()
            if stamp == self._stamp:
                return
            try:
                signing = self._dir.signing_key()
                public, document = self._read_jwks()
            except (WardenError, OSError, JwksError) as exc:
                log.warning("signing keys not reloaded, keeping the last good ones: %s", exc)
                return
            self._signing, self._public, self._document = signing, public, document
            self._stamp = stamp

    def _read_jwks(self) -> tuple[dict[str, Ed25519PublicKey], bytes]:
        path = self._dir.path / JWKS_FILE
        keys = parse_jwks(path.read_bytes())
        document = {"keys": [public_jwk(key) for key in keys.values()]}
        return keys, json.dumps(document, separators=(",", ":")).encode()

    def _stat(self) -> Stamp:
        stamps: list[tuple[int, int, int, int, int] | None] = []
        for name in (STATE_FILE, JWKS_FILE):
            try:
                st = os.stat(self._dir.path / name)
                stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)
