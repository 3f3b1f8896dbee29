"""The credential store: one JSON object ``{name: envelope}`` that Node reads too.

Reading (`load`, the per-request path) takes no lock: writers replace the
file atomically (see `files`), so a reader sees a whole old file or a whole
new one. `load` stats the store on every call and re-reads and re-parses it
and its bindings file only when it changed (device, inode, size, mtime_ns,
ctime_ns), so a file replaced by another process (a rotation) is used on the
next call, with no restart. It caches the parsed envelopes
(ciphertext), each entry's binding verdict and the AES-GCM object, never a
plaintext: each call decrypts and hands the plaintext to the caller.

Every entry is checked against its binding (`bindings`) before its
plaintext is handed out, once per change of the store (the verdict is
cached with the snapshot): an envelope that mcp-warden bound to another
name, or a kept previous value copied back, is refused (BindingMismatch,
naming both); an entry with no binding (added or replaced by a Node writer)
is readable, with one warning per process.

Writing goes through a `Transaction`: the writers' file lock, a strict read
(a file that does not parse is never overwritten), changes, the bindings
protocol of `bindings` around atomic replaces. Entries a write does not
touch are copied unchanged, including a malformed or tampered one; unbound
ones that open under the key are bound (`newly_bound`). A write that adds
ciphertext first checks that the master key opens at least one existing
entry, so a wrong key can never make a store that mixes keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_warden.config import Settings
from mcp_warden.credentials import bindings, files
from mcp_warden.credentials.bindings import (
    UNBOUND,
    Binder,
    Bindings,
    Section,
    Status,
    Verdict,
    bindings_path,
)
from mcp_warden.credentials.envelope import Envelope, cipher, parse_key, seal
from mcp_warden.credentials.errors import (
    BindingMismatch,
    CorruptStore,
    CredentialError,
    CredentialNotFound,
    DecryptionFailed,
    InvalidEnvelope,
    InvalidName,
    RekeyPending,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CONSISTENT_READS = 10
_warned_unbound: set[tuple[str, str, str]] = set()


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


def previous_path(store_path: Path) -> Path:
    """Where the previous value of each credential is kept (beside the store)."""
    return store_path.with_name(store_path.name + ".previous")


@dataclass(frozen=True)
class _Checked:
    """A parsed entry and, when its binding is wrong, the error every load raises."""

    envelope: Envelope
    error: str | None


@dataclass(frozen=True)
class _Snapshot:
    signature: files.Signature | None
    entries: dict[str, object]
    bindings: Bindings
    checked: dict[str, _Checked] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryCheck:
    """One line of `CredentialStore.check`: an entry of the store or of ``.previous``."""

    section: Section
    name: str
    status: str  # "ok", "unbound", "swapped" or "unreadable"
    detail: str = ""


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
        self.bindings_path = bindings_path(self.path)
        self._bindings_path = os.fspath(self.bindings_path)
        self._aead = cipher(key)
        self._next = cipher(next_key) if next_key is not None else None
        self._binder = Binder(key, *([next_key] if next_key is not None else []))
        self._write_binder = Binder(key)
        self._lock_timeout = lock_timeout
        self._snapshot: _Snapshot | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialStore:
        """The store of MCP_CREDENTIALS_FILE under MCP_ENCRYPTION_KEY (ConfigError if unset/bad).

        When MCP_NEW_ENCRYPTION_KEY is set too, reads open entries (and check
        bindings) under either key, so servers given both keep answering while
        `cred rekey` runs and after it, until they are restarted with the new
        key alone.
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
        checked = snapshot.checked.get(name)
        if checked is None:
            # Decrypt first: under a wrong key every binding looks unbound, and the
            # error that matters is the key.
            envelope = envelope_of(self.path, name, snapshot.entries)
            plaintext = open_entry(self.path, name, envelope, self._aead, self._next)
            checked = self._check(snapshot, name, envelope)
            snapshot.checked[name] = checked
            if checked.error is None:
                return plaintext
        if checked.error is not None:
            raise BindingMismatch(checked.error)
        return open_entry(self.path, name, checked.envelope, self._aead, self._next)

    def get(self, name: str) -> str:
        """Same as `load` (the operator's name for it)."""
        return self.load(name)

    def names(self) -> list[str]:
        """The credential names in file order (no decryption)."""
        return list(self._current().entries)

    def check(self) -> list[EntryCheck]:
        """Every entry of the store and of ``.previous``: does it open, is it bound? (locked)"""
        with files.locked(self.path, self._lock_timeout):
            read = bindings.read(self.bindings_path)
            current = read[1] if read is not None else Bindings()
            checks: list[EntryCheck] = []
            sources: tuple[tuple[Section, Path], ...] = (
                ("entries", self.path),
                ("previous", previous_path(self.path)),
            )
            for section, path in sources:
                entries = files.read_object(path) or {}
                for name in entries:
                    checks.append(self._check_entry(section, path, name, entries, current))
            return checks

    def _check_entry(
        self,
        section: Section,
        path: Path,
        name: str,
        entries: dict[str, object],
        current: Bindings,
    ) -> EntryCheck:
        try:
            open_entry(path, name, envelope_of(path, name, entries), self._aead, self._next)
        except CredentialError as exc:
            return EntryCheck(section, name, "unreadable", str(exc))
        verdict = self._binder.verdict(section, name, str(entries[name]), current)
        if verdict.status is Status.SWAPPED:
            return EntryCheck(section, name, "swapped", f"holds {verdict.source}")
        if verdict.status is Status.UNBOUND:
            return EntryCheck(section, name, "unbound", "written outside mcp-warden")
        return EntryCheck(section, name, "ok")

    def _check(self, snapshot: _Snapshot, name: str, envelope: Envelope) -> _Checked:
        raw = str(snapshot.entries[name])
        verdict = self._binder.verdict("entries", name, raw, snapshot.bindings)
        if verdict.status is Status.SWAPPED:
            return _Checked(envelope, swapped_message(self.path, name, verdict))
        if verdict.status is Status.UNBOUND:
            warn_unbound(self.path, name, raw)
        return _Checked(envelope, None)

    def _current(self) -> _Snapshot:
        # Only the store is stat'ed per call: verdicts are about the store's content, and
        # every write of a new envelope changes the store. A bindings file changed alone
        # (`cred verify --bind`) is seen with the store's next change; until then the
        # cached verdicts stay true of the unchanged entries.
        snapshot = self._snapshot
        if snapshot is not None and snapshot.signature == _signature(self._path):
            return snapshot
        return self._read()

    def _read(self) -> _Snapshot:
        """Read the bindings, then the store, and keep the pair if the bindings held still."""
        for _ in range(_CONSISTENT_READS):
            side = bindings.read(self.bindings_path)
            store = files.read_snapshot(self.path)
            side_signature = side[0] if side is not None else None
            snapshot = _Snapshot(
                store[0] if store is not None else None,
                files.parse_object(self.path, store[1]) if store is not None else {},
                side[1] if side is not None else Bindings(),
            )
            if _signature(self._bindings_path) == side_signature:
                self._snapshot = snapshot
                return snapshot
        return snapshot  # writers kept changing it: use this read once, cache nothing

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
            txn = Transaction.open(self.path, self._aead, self._write_binder)
            yield txn
            txn.commit()


def swapped_message(path: Path, name: str, verdict: Verdict) -> str:
    """The one-line error for an entry that holds another entry's (or an old) envelope."""
    return (
        f"credential {name!r} in {path} holds {verdict.source}, not a value written as "
        f"{name!r} (an envelope was copied between entries or back from .previous); it is "
        f"refused: set it again with `mcp-warden cred set {name}`, or restore the store and "
        f"{bindings_path(path).name} from a backup"
    )


def warn_unbound(path: Path, name: str, envelope: str) -> None:
    """Warn once per process that an entry has no binding (a Node writer added or replaced it)."""
    seen = (os.fspath(path), name, envelope)
    if seen not in _warned_unbound:
        _warned_unbound.add(seen)
        files.logger.warning(
            "credential %r in %s is not bound (added or replaced outside mcp-warden, "
            "for example by a Node service); if that write was yours, bind it with "
            "`mcp-warden cred verify --bind` (any `mcp-warden cred` write binds it too)",
            name,
            path,
        )


def _signature(path: str) -> files.Signature | None:
    try:
        return files.signature(os.stat(path))
    except FileNotFoundError:
        return None


class Transaction:
    """The store's entries (and its previous values) while the writers' lock is held."""

    def __init__(
        self,
        path: Path,
        entries: dict[str, object],
        aead: AESGCM,
        *,
        binder: Binder,
        bound: Bindings | None = None,
    ) -> None:
        self.path = path
        self.previous_path = previous_path(path)
        self.newly_bound: list[str] = []
        """Names of unbound entries the last commit bound (the caller logs them)."""
        self._entries = entries
        self._aead = aead
        self._binder = binder
        self._bound = bound if bound is not None else Bindings()
        self._previous: dict[str, object] | None = None
        self._put: set[str] = set()
        self._kept: set[str] = set()
        self._dirty = False
        self._previous_dirty = False
        self._bind = False
        self._key_checked = False

    @classmethod
    def open(cls, path: Path, aead: AESGCM, binder: Binder) -> Transaction:
        """Read the store and its bindings strictly (call with the writers' lock held)."""
        for what, target in (
            ("the credential store", path),
            ("the previous values file", previous_path(path)),
            ("the bindings file", bindings_path(path)),
        ):
            files.refuse_link(target, what)
            files.remove_stale_temps(target)
        read = bindings.read(bindings_path(path))
        return cls(
            path,
            files.read_object(path) or {},
            aead,
            binder=binder,
            bound=read[1] if read is not None else None,
        )

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

    def verdict(self, name: str, section: Section = "entries") -> Verdict:
        """The binding verdict of `name` in the store (or in ``.previous``) as read."""
        raw = (self._entries if section == "entries" else self.previous).get(name)
        if not isinstance(raw, str):
            return UNBOUND
        return self._binder.verdict(section, name, raw, self._bound)

    def trusted(self, name: str) -> bool:
        """Whether `name` opens and is not a swapped envelope (worth keeping as previous)."""
        return self.opens(name) and self.verdict(name).status is not Status.SWAPPED

    @property
    def previous(self) -> dict[str, object]:
        """The previous values (``<store>.previous``), read on first use."""
        if self._previous is None:
            self._previous = files.read_object(self.previous_path) or {}
        return self._previous

    def keep_previous(self, values: Mapping[str, object]) -> None:
        """Keep these envelopes as the previous values of their names (written on commit)."""
        if values:
            self.previous.update(values)
            self._kept.update(values)
            self._previous_dirty = True

    def drop_previous(self, name: str) -> None:
        if self.previous.pop(name, None) is not None:
            self._kept.discard(name)
            self._previous_dirty = True

    def put(self, name: str, value: str) -> None:
        """Encrypt `value` under a fresh IV and store it as `name`."""
        self.put_envelope(name, str(seal(value.encode("utf-8"), self._aead)))

    def put_envelope(self, name: str, envelope: str) -> None:
        """Store an envelope already sealed under this key (a previous value)."""
        check_name(name)
        self._check_key()
        self._entries[name] = envelope
        self._put.add(name)
        self._dirty = True

    def remove(self, name: str) -> object:
        """Remove `name` and return its stored value; CredentialNotFound if absent."""
        if name not in self._entries:
            raise not_found(self.path, name)
        self._check_key()  # a wrong key must not delete what it cannot keep as previous
        self._dirty = True
        self._put.discard(name)
        return self._entries.pop(name)

    def bind_unbound(self) -> None:
        """Bind every unbound entry that opens under this key on commit, even with no change."""
        self._bind = True

    def commit(self, *, store_first: bool = False) -> None:
        """Write the changes now: bindings (old and new), the files, bindings (new).

        ``.previous`` is written before the store unless `store_first`; a no-op
        when nothing changed.
        """
        if not (self._dirty or self._previous_dirty or self._bind):
            return
        final = self._final_bindings()
        target = bindings_path(self.path)
        if self._dirty or self._previous_dirty:
            both = self._bound.union(final)
            if both != self._bound:
                bindings.write(target, both)
                self._bound = both
            writes = []
            if self._previous_dirty:
                writes.append((self.previous_path, self.previous))
            if self._dirty:
                writes.append((self.path, self._entries))
            for path, entries in reversed(writes) if store_first else writes:
                files.write_atomic(path, files.dump_object(entries))
        if final != self._bound:
            bindings.write(target, final)
        self._bound = final
        self._put.clear()
        self._kept.clear()
        self._dirty = self._previous_dirty = self._bind = False

    def _final_bindings(self) -> Bindings:
        """The bindings after this commit; collects `newly_bound`."""
        self.newly_bound = []
        entries: dict[str, tuple[str, ...]] = {}
        for name, raw in self._entries.items():
            macs = self._binding("entries", name, raw, name in self._put)
            if macs is None and isinstance(raw, str) and self.opens(name):
                macs = (self._binder.mac("entries", name, raw),)
                self.newly_bound.append(name)
            if macs:
                entries[name] = macs
        if not self._previous_dirty:
            return Bindings(entries, dict(self._bound.previous))
        previous: dict[str, tuple[str, ...]] = {}
        for name, raw in self.previous.items():
            macs = self._binding("previous", name, raw, name in self._kept)
            if macs:
                previous[name] = macs
        return Bindings(entries, previous)

    def _binding(
        self, section: Section, name: str, raw: object, written: bool
    ) -> tuple[str, ...] | None:
        """The MACs `name` keeps: its new one if written or bound, the old ones if swapped."""
        if not isinstance(raw, str):
            return ()
        if written:
            return (self._binder.mac(section, name, raw),)
        verdict = self._binder.verdict(section, name, raw, self._bound)
        if verdict.status is Status.BOUND:
            return (self._binder.mac(section, name, raw),)
        if verdict.status is Status.SWAPPED:
            return self._bound.section(section).get(name, ())  # it stays an error
        return None  # unbound

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
