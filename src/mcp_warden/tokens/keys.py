"""The issuer's Ed25519 signing keys and the JWKS it publishes, in MCP_KEYS_DIR.

Layout of the directory (created 0700 when we create it):

- `<kid>.pem`: one private key, PKCS#8 PEM, unencrypted, mode 0600.
- `jwks.json`: every live public key (RFC 8037 OKP JWK, kid = RFC 7638
  thumbprint, alg EdDSA, use sig), written atomically, mode 0644: it is public.
- `state.json`: kid, x, created and stopped-signing time of each live key and
  which one is active, written atomically, mode 0644: it holds nothing secret
  (kids and x are in jwks.json anyway). It is not trusted to say what gets
  published: `new` and `retire` republish a key only when its `<kid>.pem`
  is here and holds that very key, so a public key added to an edited state
  file is refused, never published at the next rotation.

One key is active: it signs. `new` makes a fresh active key and keeps the old
one published, so tokens it signed keep verifying. `retire` unpublishes a key
and deletes its private key, refusing while tokens it signed may still be
valid: until `max_ttl` seconds after it stopped signing (exp has no leeway in
our verifier). Mutations hold a file lock, so two `keys` commands cannot
interleave; readers see only whole files (write to a temporary, then rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from mcp_warden.credentials.files import open_private, write_atomic
from mcp_warden.errors import ConfigError, WardenError
from mcp_warden.tokens.jwks import JwksError, public_jwk, public_key_from_jwk

Clock = Callable[[], float]

STATE_FILE = "state.json"
JWKS_FILE = "jwks.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1
PEM_MAX_BYTES = 64 * 1024


class KeysError(WardenError):
    """A key operation that was refused (unknown kid, still in use, damaged state)."""


def kid_of(key: Ed25519PublicKey) -> str:
    """The kid of a public key: its RFC 7638 thumbprint."""
    return public_jwk(key)["kid"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One live key as `keys list` shows it."""

    kid: str
    x: str
    created: int
    stopped_signing: int | None

    @property
    def active(self) -> bool:
        return self.stopped_signing is None

    def retirable_at(self, max_ttl: int) -> int | None:
        """When tokens this key signed have all expired; None while it still signs."""
        return None if self.stopped_signing is None else self.stopped_signing + max_ttl


class KeyDir:
    """The signing keys in one directory (MCP_KEYS_DIR)."""

    def __init__(self, path: Path, *, clock: Clock = time.time) -> None:
        self.path = path
        self._clock = clock

    # -- reading -----------------------------------------------------------

    def live_keys(self) -> list[KeyInfo]:
        """Every live key, oldest first; empty when the directory has none."""
        return self._read_state()

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The active key's kid and private key, checked against its kid and the JWKS."""
        active = [k for k in self._read_state() if k.active]
        if not active:
            raise ConfigError(
                f"no active signing key in {self.path}; create one with `mcp-warden keys new`"
            )
        kid = active[-1].kid
        pem_path = self.path / f"{kid}.pem"
        try:
            mode = pem_path.stat().st_mode & 0o777
            pem = pem_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read signing key {pem_path}: {exc.strerror}") from None
        if mode & 0o077:
            raise ConfigError(
                f"signing key {pem_path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        try:
            key = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise KeysError(f"{pem_path} is not an unencrypted PKCS#8 PEM key") from None
        if not isinstance(key, Ed25519PrivateKey) or kid_of(key.public_key()) != kid:
            raise KeysError(f"{pem_path} does not hold the Ed25519 key named {kid}")
        if kid not in self._published_kids():
            raise KeysError(
                f"active key {kid} is not in {self.path / JWKS_FILE}; "
                "run `mcp-warden keys new` to repair the published set"
            )
        return kid, key

    # -- changing ----------------------------------------------------------

    def new(self) -> KeyInfo:
        """Generate a key, publish it, make it active; the old active key stops signing."""
        self._ensure_dir()
        key = Ed25519PrivateKey.generate()
        jwk = public_jwk(key.public_key())
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        with self._locked():
            now = int(self._clock())
            current = self._read_state()
            self._check_made_here(current)
            _write_new(self.path / f"{jwk['kid']}.pem", pem, 0o600)
            keys = [
                KeyInfo(k.kid, k.x, k.created, now if k.active else k.stopped_signing)
                for k in current
            ]
            info = KeyInfo(jwk["kid"], jwk["x"], now, None)
            keys.append(info)
            self._publish(keys)
        return info

    def retire(self, kid: str, *, max_ttl: int, force: bool = False) -> KeyInfo:
        """Unpublish `kid` and delete its private key.

        Refused for the active key, and until `max_ttl` seconds after the key
        stopped signing unless `force` (a leaked key must go now).
        """
        with self._locked():
            keys = self._read_state()
            found = [k for k in keys if k.kid == kid]
            if not found:
                raise KeysError(f"no live key {kid!r} in {self.path}; see `mcp-warden keys list`")
            info = found[0]
            until = info.retirable_at(max_ttl)
            if until is None:
                raise KeysError(
                    f"{kid} is the active signing key; make a new one with `mcp-warden keys new` "
                    "first"
                )
            if not force and self._clock() < until:
                raise KeysError(
                    f"tokens signed by {kid} may be valid until {_iso(until)}; wait, or pass "
                    "--force to refuse them now"
                )
            remaining = [k for k in keys if k.kid != kid]
            self._check_made_here(remaining)
            self._publish(remaining)
            with contextlib.suppress(FileNotFoundError):
                (self.path / f"{kid}.pem").unlink()
        return info

    # -- files -------------------------------------------------------------

    def _check_made_here(self, keys: list[KeyInfo]) -> None:
        """Refuse to (re)publish a key whose private key this directory does not hold.

        `keys new` writes `<kid>.pem` before the key is ever published, and
        `retire` unpublishes before it deletes it, so every key we published
        has its private key here: an entry without one came from somewhere else.
        """
        state = self.path / STATE_FILE
        for info in keys:
            problem = self._not_made_here(info.kid)
            if problem is not None:
                raise KeysError(
                    f"{state} lists key {info.kid} but {problem}, so `mcp-warden keys` did not "
                    f"make it and will not publish it; restore {state} from a backup or delete "
                    "that entry, then run the command again"
                )

    def _not_made_here(self, kid: str) -> str | None:
        """Why `kid` is not a key of this directory, or None: its private key is here and fits."""
        pem_path = self.path / f"{kid}.pem"
        try:
            fd = open_private(pem_path, os.O_RDONLY, what="the signing key")
        except FileNotFoundError:
            return f"there is no private key {pem_path}"
        except OSError as exc:
            return f"{pem_path} cannot be read ({exc.strerror})"
        with os.fdopen(fd, "rb") as f:
            pem = f.read(PEM_MAX_BYTES)
        try:
            key = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return f"{pem_path} is not an unencrypted PKCS#8 PEM key"
        if not isinstance(key, Ed25519PrivateKey) or kid_of(key.public_key()) != kid:
            return f"{pem_path} holds another key"
        return None

    def _ensure_dir(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import FileLock  # noqa: PLC0415  (only mutations pay for its import)

        self._ensure_dir()
        with FileLock(str(self.path / LOCK_FILE), timeout=30):
            yield

    def _publish(self, keys: list[KeyInfo]) -> None:
        """jwks.json first, then state.json: a key is public before it can sign."""
        jwks = {"keys": [public_jwk(public_key_from_jwk(_okp(k.x))) for k in keys]}
        write_atomic(self.path / JWKS_FILE, _dump(jwks), 0o644)
        state = {
            "version": STATE_VERSION,
            "keys": [
                {"kid": k.kid, "x": k.x, "created": k.created, "stopped_signing": k.stopped_signing}
                for k in keys
            ],
        }
        write_atomic(self.path / STATE_FILE, _dump(state), 0o644)

    def _read_state(self) -> list[KeyInfo]:
        path = self.path / STATE_FILE
        try:
            doc = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, ValueError):
            raise KeysError(f"{path} is unreadable or not JSON; restore it from backup") from None
        try:
            if doc["version"] != STATE_VERSION:
                raise KeysError(f"{path} has unsupported version {doc['version']!r}")
            keys = [_key_info(entry) for entry in doc["keys"]]
        except (KeyError, TypeError, JwksError):
            raise KeysError(f"{path} is damaged; restore it from backup") from None
        if sum(k.active for k in keys) > 1:
            raise KeysError(f"{path} names more than one active key; restore it from backup")
        return keys

    def _published_kids(self) -> set[str]:
        try:
            doc = json.loads((self.path / JWKS_FILE).read_text("utf-8"))
            return {str(k["kid"]) for k in doc["keys"]}
        except (OSError, ValueError, KeyError, TypeError):
            return set()


def _key_info(entry: Any) -> KeyInfo:
    kid, x, created, stopped = entry["kid"], entry["x"], entry["created"], entry["stopped_signing"]
    if kid_of(public_key_from_jwk(_okp(x))) != kid:
        raise JwksError("kid does not match x")
    if type(created) is not int or not (stopped is None or type(stopped) is int):
        raise TypeError("times must be integers")
    return KeyInfo(kid, x, created, stopped)


def _okp(x: str) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": x}


def _dump(doc: object) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` exclusively with `mode` from the start (never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
