"""Public keys a verifier trusts: RFC 8037 OKP JWKs, their RFC 7638 kid, and where they come from.

A JWKS is read from a file (re-read when it changes; the stat that notices is
rate-limited) or fetched from an https URL (cached, refreshed after a maximum
age and on an unknown kid at most once per cooldown; a failed fetch keeps the
last good set). Only https: a JWKS decides whose signatures are believed, so
it is never fetched over a channel an on-path attacker could rewrite, not even
on loopback (tests run a real TLS server with their own CA instead).

Every key we trust is bound to its kid: a JWK is used only when its `kid` is
the RFC 7638 thumbprint of the key itself, so "kid is still published" means
"this exact key is still trusted", and a kid cannot be re-pointed at another
key. A JWKS that carries a private key (`d`) is refused whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from mcp_warden.config import DEFAULTS
from mcp_warden.errors import ConfigError
from mcp_warden.metrics import catalog as metrics
from mcp_warden.tokens.jws import MalformedError, b64url_decode, b64url_encode
from mcp_warden.urls import redacted, scrub

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("mcp_warden.tokens.jwks")

Monotonic = Callable[[], float]
KeySet = Mapping[str, Ed25519PublicKey]

ED25519_KEY_BYTES = 32
MAX_JWKS_BYTES = 256 * 1024


class JwksError(ValueError):
    """A JWKS document that cannot be trusted as a whole."""


def thumbprint(x: str) -> str:
    """RFC 7638 SHA-256 thumbprint of an Ed25519 OKP JWK with public value `x`.

    The required members of an OKP key are crv, kty and x (RFC 8037 section 2),
    serialized in lexicographic order without whitespace.
    """
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True
    )
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The JWK we publish for `key`: OKP/Ed25519, kid = thumbprint, alg EdDSA, use sig."""
    x = b64url_encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    kid = thumbprint(x)
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 public key of an OKP JWK, strictly (canonical 32-byte `x`, no `d`).

    Raises JwksError. The key object is built by PyJWT's JWK support after
    our own stricter checks.
    """
    if "d" in jwk:
        raise JwksError("a JWK holds a private key (d); never publish private keys")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise JwksError("not an Ed25519 OKP key")
    x = jwk.get("x")
    try:
        raw = b64url_decode(x) if isinstance(x, str) else b""
    except MalformedError:
        raw = b""
    if len(raw) != ED25519_KEY_BYTES:
        raise JwksError("x is not 32 bytes of canonical base64url")
    try:
        key = PyJWK({"kty": "OKP", "crv": "Ed25519", "x": x}, algorithm="EdDSA").key
    except PyJWTError as exc:
        raise JwksError(f"unusable Ed25519 key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - PyJWT contract
        raise JwksError("not an Ed25519 public key")
    return key


def parse_jwks(data: bytes) -> dict[str, Ed25519PublicKey]:
    """kid -> key for every usable signing key in a JWKS document.

    Keys of other types or uses are skipped (a JWKS may serve other
    algorithms); an Ed25519 key whose kid is not its thumbprint is skipped
    with a warning. Raises JwksError when the document itself is not a JWKS
    or carries a private key.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise JwksError("not a JSON document") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('not a JWKS: expected {"keys": [...]}')
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict):
            raise JwksError("a member of keys is not a JSON object")
        if "d" in jwk:
            raise JwksError("the JWKS holds a private key (d); never publish private keys")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "EdDSA") != "EdDSA":
            continue
        key = public_key_from_jwk(jwk)
        kid = jwk.get("kid")
        if kid != thumbprint(jwk["x"]):
            log.warning("JWKS key skipped: its kid is not its RFC 7638 thumbprint")
            continue
        keys[kid] = key
    return keys


class JwksSource(Protocol):
    """Where a verifier gets the keys it trusts."""

    def current(self) -> KeySet:
        """The trusted keys now; cheap enough to call on every verification."""

    def refresh_unknown_kid(self) -> KeySet:
        """Reload now if the cooldown allows (a token named a kid we do not know)."""

    def close(self) -> None:
        """Release what the source holds (connections)."""


class FileJwks:
    """A JWKS file, re-read when its inode, size or mtime changes.

    The stat that notices a change runs at most once per `refresh_seconds`;
    an unknown kid forces one stat at most once per `refresh_seconds` too.
    A file that turns unreadable or invalid keeps the last good set.
    """

    def __init__(
        self,
        path: Path,
        *,
        refresh_seconds: float = DEFAULTS.jwks_refresh_seconds,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._path = path
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: KeySet = {}
        self._stamp: tuple[int, ...] | None = None
        if not self._reload():
            raise ConfigError(
                f"cannot read a JWKS from {path}; create keys with `mcp-warden keys new` "
                "or point MCP_JWKS at the issuer's jwks.json"
            )
        self._next_check = monotonic() + refresh_seconds
        self._next_forced = self._next_check

    def current(self) -> KeySet:
        if self._monotonic() >= self._next_check:
            self._check(forced=False)
        return self._keys

    def refresh_unknown_kid(self) -> KeySet:
        if self._monotonic() >= self._next_forced:
            self._check(forced=True)
        return self._keys

    def close(self) -> None:
        """Nothing to release."""

    def _check(self, *, forced: bool) -> None:
        with self._lock:
            now = self._monotonic()
            if forced:
                if now < self._next_forced:
                    return
                self._next_forced = now + self._refresh
            elif now < self._next_check:
                return
            self._next_check = now + self._refresh
            self._reload()

    def _reload(self) -> bool:
        """Re-read the file if it changed; False when it is unusable (last set kept)."""
        try:
            st = os.stat(self._path)
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if stamp != self._stamp:
                self._keys = parse_jwks(_read_capped(self._path))
                self._stamp = stamp
                metrics.jwks_loaded("file", len(self._keys))
        except (OSError, JwksError) as exc:
            if self._stamp is not None:  # at start there is no good set: the caller raises
                log.warning("JWKS %s not reloaded, keeping the last good set: %s", self._path, exc)
            return False
        return True


class UrlJwks:
    """A JWKS fetched over https with httpx.

    Refetched when older than `max_age` seconds and, on an unknown kid, at most
    once per `cooldown` seconds; the fetch runs in the calling thread (timeout
    `timeout`) while other threads keep using the last good set. A failed fetch
    (network, status, size, content) keeps the last good set and is retried no
    sooner than `cooldown` later. Redirects are not followed. httpx is imported
    here, not at module level, so file-based verifiers and the CLI do not pay for it.
    """

    def __init__(
        self,
        url: str,
        *,
        max_age: float = DEFAULTS.jwks_max_age_seconds,
        cooldown: float = DEFAULTS.jwks_refresh_seconds,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        if not url.startswith("https://"):
            raise ConfigError(f"MCP_JWKS URL must use https:// (got {url.split(':', 1)[0]}://)")
        import httpx  # noqa: PLC0415  (see the class docstring)

        try:
            httpx.URL(url)
        except httpx.InvalidURL:  # raised outside HTTPError by every request: refuse it now
            raise ConfigError(
                f"MCP_JWKS {redacted(url)} is not a valid URL; percent-encode a user name or "
                "password holding '/', '?', '#' or '@'"
            ) from None
        self._url = url
        self._shown = redacted(url)  # never print a password or a query token
        self._max_age = max_age
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._client: httpx.Client = httpx.Client(
            timeout=timeout,
            verify=ssl_context if ssl_context is not None else True,
            follow_redirects=False,
        )
        self._keys: KeySet = {}
        self._last_attempt = monotonic()
        if not self._fetch():
            self._client.close()
            raise ConfigError(
                f"cannot fetch a JWKS from {self._shown}; check MCP_JWKS and the issuer"
            )
        self._fresh_until = self._last_attempt + max_age

    def current(self) -> KeySet:
        if self._monotonic() >= self._fresh_until:
            self._refresh(forced=False)
        return self._keys

    def refresh_unknown_kid(self) -> KeySet:
        if self._monotonic() >= self._last_attempt + self._cooldown:
            self._refresh(forced=True)
        return self._keys

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _refresh(self, *, forced: bool) -> None:
        # One fetch at a time, and nobody waits for it: other threads keep
        # answering from the last good set instead of stalling behind the network.
        if not self._lock.acquire(blocking=False):
            return
        try:
            now = self._monotonic()
            if now < self._last_attempt + self._cooldown:
                return  # another thread just fetched, or the last failure is too recent
            if not forced and now < self._fresh_until:
                return
            self._last_attempt = now
            if self._fetch():
                self._fresh_until = now + self._max_age
        finally:
            self._lock.release()

    def _fetch(self) -> bool:
        import httpx  # noqa: PLC0415  (already loaded by __init__)

        try:
            self._keys = parse_jwks(self._download())
        except (httpx.HTTPError, JwksError) as exc:
            log.warning(
                "JWKS %s not fetched, keeping the last good set: %s",
                self._shown,
                scrub(str(exc) or type(exc).__name__, self._url),
            )
            return False
        metrics.jwks_loaded("https", len(self._keys))
        return True

    def _download(self) -> bytes:
        with self._client.stream("GET", self._url) as resp:
            if resp.status_code != 200:
                raise JwksError(f"HTTP status {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
        return bytes(body)


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
    return data


def open_jwks(
    location: str,
    *,
    refresh_seconds: float = DEFAULTS.jwks_refresh_seconds,
    max_age_seconds: float = DEFAULTS.jwks_max_age_seconds,
) -> FileJwks | UrlJwks:
    """A JWKS source for MCP_JWKS: an https URL or a file path.

    `max_age_seconds` bounds how long a URL source keeps serving a key the
    issuer has retired; a file is re-checked every `refresh_seconds`.
    """
    if "://" in location:
        return UrlJwks(location, max_age=max_age_seconds, cooldown=refresh_seconds)
    return FileJwks(Path(location), refresh_seconds=refresh_seconds)
