"""The credential store: one JSON object ``{name: envelope}`` that Node reads too.

Reading (`load`, the per-request path) takes no lock: writers replace the
file atomically (see `files`), so a reader sees a whole old file or a whole
new one. `load` stats the file on every call and re-reads and re-parses it
only when its (device, inode, size, mtime_ns, ctime_ns) changed, so a file
replaced by another process (a rotation) is used on the next call, with no
restart. It caches the parsed envelopes (ciphertext) and the AES-GCM object,
never a plaintext: each call decrypts and hands the plaintext to the caller.

Writing goes through a `Transaction`: the writers' file lock, a strict read
(a file that does not parse is never overwritten), changes, one atomic
replace. Entries a write does not touch are copied unchanged, including a
malformed or tampered one. A write that adds ciphertext first checks that
the master key opens at least one existing entry, so a wrong key can never
make a store that mixes keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_warden.config import Settings
from mcp_warden.credentials import files
from mcp_warden.credentials.envelope import Envelope, cipher, parse_key, seal
from mcp_warden.credentials.errors import (
    CorruptStore,
    CredentialNotFound,
    DecryptionFailed,
    InvalidEnvelope,
    InvalidName,
    RekeyPending,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(name: str) -> str:
    """`name` if it is a valid credential name (what `set` accepts), else InvalidName."""
    if NAME.fullmatch(name) is None:
        raise InvalidName(
            f"{name[:140]!r} is not a valid credential name: use 1-128 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return name


def rekey_journal(store_path: Path) -> Path:
    """Where an unfinished re-key of `store_path` records itself (see `rekey`)."""
    return store_path.with_name(store_path.name + ".rekey")


@dataclass(frozen=True)
class _Snapshot:
    signature: files.Signature
    entries: dict[str, object]
    envelopes: dict[str, Envelope] = field(default_factory=dict)


class CredentialStore:
    """The encrypted credential file and its master key."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        next_key: bytes | None = None,
        lock_timeout: float = files.LOCK_TIMEOUT,
    ) -> None:
        """`next_key`: the key of a coming re-key; reads also open under it, writes never use it."""
        self.path = Path(path)
        self._path = os.fspath(self.path)
        self._aead = cipher(key)
        self._next = cipher(next_key) if next_key is not None else None
        self._lock_timeout = lock_timeout
        self._snapshot: _Snapshot | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialStore:
        """The store of MCP_CREDENTIALS_FILE under MCP_ENCRYPTION_KEY (ConfigError if unset/bad).

        When MCP_NEW_ENCRYPTION_KEY is set too, reads open entries under either
        key, so servers given both keep answering while `cred rekey` runs and
        after it, until they are restarted with the new key alone.
        """
        new = settings.new_encryption_key
        return cls(
            settings.credentials_file,
            parse_key(settings.require_encryption_key()),
            next_key=parse_key(new, "MCP_NEW_ENCRYPTION_KEY") if new is not None else None,
        )

    # -- reading -------------------------------------------------------------

    def load(self, name: str) -> str:
        """The plaintext of `name` for this call only (the just-in-time per-request read)."""
        snapshot = self._current()
        envelope = snapshot.envelopes.get(name)
        if envelope is None:
            envelope = envelope_of(self.path, name, snapshot.entries)
            snapshot.envelopes[name] = envelope
        return open_entry(self.path, name, envelope, self._aead, self._next)

    def get(self, name: str) -> str:
        """Same as `load` (the operator's name for it)."""
        return self.load(name)

    def names(self) -> list[str]:
        """The credential names in file order (no decryption)."""
        return list(self._current().entries)

    def _current(self) -> _Snapshot:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return _Snapshot((0, 0, 0, 0, 0), {})
        snapshot = self._snapshot
        if snapshot is not None and snapshot.signature == files.signature(st):
            return snapshot
        read = files.read_snapshot(self.path)
        if read is None:
            return _Snapshot((0, 0, 0, 0, 0), {})
        snapshot = _Snapshot(read[0], files.parse_object(self.path, read[1]))
        self._snapshot = snapshot
        return snapshot

    # -- writing -------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        """Create or replace `name` (no log, no previous value: see `rotation`)."""
        with self.transaction() as txn:
            txn.put(name, value)

    def delete(self, name: str) -> None:
        """Remove `name`; CredentialNotFound if absent."""
        with self.transaction() as txn:
            txn.remove(name)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Lock, read strictly, yield the entries; the changes are written on clean exit."""
        with files.locked(self.path, self._lock_timeout):
            journal = rekey_journal(self.path)
            if journal.exists():
                raise RekeyPending(
                    f"a re-key of {self.path} was interrupted ({journal} exists); run "
                    "`mcp-warden cred rekey` again with the same keys to finish it"
                )
            files.remove_stale_temps(self.path)
            txn = Transaction(self.path, files.read_object(self.path) or {}, self._aead)
            yield txn
            txn.commit()


class Transaction:
    """The store's entries while the writers' lock is held."""

    def __init__(self, path: Path, entries: dict[str, object], aead: AESGCM) -> None:
        self.path = path
        self._entries = entries
        self._aead = aead
        self._dirty = False
        self._key_checked = False

    def names(self) -> list[str]:
        return list(self._entries)

    def raw(self, name: str) -> object | None:
        """The stored JSON value of `name` as it is in the file (None when absent)."""
        return self._entries.get(name)

    def decrypt(self, name: str) -> str:
        """The plaintext of `name`; named errors as in `CredentialStore.load`."""
        return self.decrypt_from(self.path, name, self._entries)

    def decrypt_from(self, path: Path, name: str, entries: dict[str, object]) -> str:
        """Decrypt entry `name` of another file under this key (errors name that file)."""
        return open_entry(path, name, envelope_of(path, name, entries), self._aead)

    def opens(self, name: str) -> bool:
        """Whether `name` exists, parses and authenticates under this key."""
        try:
            self.decrypt(name)
        except (CredentialNotFound, InvalidEnvelope, DecryptionFailed, CorruptStore):
            return False
        return True

    def put(self, name: str, value: str) -> None:
        """Encrypt `value` under a fresh IV and store it as `name`."""
        self.put_envelope(name, str(seal(value.encode("utf-8"), self._aead)))

    def put_envelope(self, name: str, envelope: str) -> None:
        """Store an envelope already sealed under this key (a previous value)."""
        check_name(name)
        self._check_key()
        self._entries[name] = envelope
        self._dirty = True

    def remove(self, name: str) -> object:
        """Remove `name` and return its stored value; CredentialNotFound if absent."""
        if name not in self._entries:
            raise not_found(self.path, name)
        self._check_key()  # a wrong key must not delete what it cannot keep as previous
        self._dirty = True
        return self._entries.pop(name)

    def commit(self) -> None:
        """Write the changes now (atomic replace); a no-op when nothing changed."""
        if self._dirty:
            files.write_atomic(self.path, files.dump_object(self._entries))
            self._dirty = False

    def _check_key(self) -> None:
        if self._key_checked or not self._entries:
            self._key_checked = True
            return
        if not any(self.opens(name) for name in self._entries):
            raise DecryptionFailed(
                f"none of the {len(self._entries)} entries in {self.path} opens with "
                "MCP_ENCRYPTION_KEY: the key is wrong, the store was re-keyed, or every entry "
                "was tampered with; nothing was written: use the key the store was written with "
                "(or, if every entry was tampered with, restore the file from a backup)"
            )
        self._key_checked = True


def not_found(path: Path, name: str) -> CredentialNotFound:
    return CredentialNotFound(
        f"no credential {name!r} in {path}; list them with `mcp-warden cred list` "
        f"or create it with `mcp-warden cred set {name}`"
    )


def envelope_of(path: Path, name: str, entries: dict[str, object]) -> Envelope:
    """The parsed envelope of entry `name`, with errors that name the entry."""
    if name not in entries:
        raise not_found(path, name)
    raw = entries[name]
    if not isinstance(raw, str):
        raise InvalidEnvelope(
            f"credential {name!r} in {path} is JSON {type(raw).__name__}, not an envelope "
            f"string; set it again with `mcp-warden cred set {name}`"
        )
    if raw.startswith("gAAAAA") and ":" not in raw:
        raise InvalidEnvelope(
            f"credential {name!r} in {path} is a Fernet token (the tutorial's Python variant); "
            "move that file aside and run `mcp-warden cred import-fernet FILE`"
        )
    try:
        return Envelope.parse(raw)
    except InvalidEnvelope as exc:
        raise InvalidEnvelope(f"credential {name!r} in {path}: {exc}") from None


def open_entry(
    path: Path, name: str, envelope: Envelope, aead: AESGCM, next_aead: AESGCM | None = None
) -> str:
    """Decrypt one entry to text (under `aead`, else `next_aead`), with errors naming it."""
    try:
        plaintext = _open_either(envelope, aead, next_aead)
    except DecryptionFailed:
        wrong_key = (
            "MCP_ENCRYPTION_KEY is not the key"
            if next_aead is None
            else "neither MCP_ENCRYPTION_KEY nor MCP_NEW_ENCRYPTION_KEY is the key"
        )
        raise DecryptionFailed(
            f"credential {name!r} in {path} did not authenticate: either {wrong_key} "
            "it was written with, or the entry was tampered with (AES-GCM cannot "
            f"tell which); check the key, then `mcp-warden cred rollback {name}`, restore it "
            "from a backup or set it again"
        ) from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptStore(
            f"credential {name!r} in {path} decrypts to bytes that are not UTF-8 text; "
            f"set it again with `mcp-warden cred set {name}`"
        ) from None


def _open_either(envelope: Envelope, aead: AESGCM, next_aead: AESGCM | None) -> bytes:
    try:
        return envelope.open(aead)
    except DecryptionFailed:
        if next_aead is None:
            raise
        return envelope.open(next_aead)
