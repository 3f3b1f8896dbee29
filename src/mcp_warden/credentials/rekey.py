"""Re-keying: the store and its previous values under a new master key.

Two files hold ciphertext: the store and ``<store>.previous``. Each is
re-encrypted in memory and replaced by one atomic rename, so each file is
wholly under the old key or wholly under the new one at every moment, never
a mix. The scheme, all under the store's writers' lock:

1. Without a journal: check that every entry of both files opens under the
   old key (a bad entry is named and stops the job before anything is
   written), then write the journal ``<store>.rekey``: a fixed text sealed
   under the new key (it identifies the target key without storing it) and
   the log's line count. While the journal exists, every other writer
   refuses with RekeyPending, so nothing can add old-key ciphertext.
2. ``.previous``, then the store: a file whose entries all open under the
   new key is done; one whose entries all open under the old key is
   re-encrypted and replaced.
3. One ``rekeyed`` log line per credential, skipping any already written
   after the journal's line count (a crash during this step).
4. Remove the journal.

A crash at any moment leaves every file readable with the old key or with
the new key. Re-running `mcp-warden cred rekey` with the same two keys finds
the journal, recognises finished files by their opening under the new key,
and completes the job; with a different new key it refuses and says so.
Servers that have MCP_NEW_ENCRYPTION_KEY beside MCP_ENCRYPTION_KEY read under
either key (`CredentialStore.from_settings`), so they keep serving through a
re-key; restart them afterwards with the new key alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_warden.credentials import files
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.envelope import Envelope, cipher, seal
from mcp_warden.credentials.errors import (
    CorruptStore,
    DecryptionFailed,
    InvalidEnvelope,
    RekeyPending,
)
from mcp_warden.credentials.rotation import previous_path
from mcp_warden.credentials.store import envelope_of, rekey_journal
from mcp_warden.errors import ConfigError

_TARGET = b"mcp-warden re-key target"
State = Literal["old", "new", "empty"]


@dataclass(frozen=True)
class RekeyResult:
    """How many entries now live under the new key, and whether a crashed job was resumed."""

    credentials: int
    previous: int
    resumed: bool


def rekey(
    store_path: Path,
    old_key: bytes,
    new_key: bytes,
    log: RotationLog,
    *,
    lock_timeout: float = files.LOCK_TIMEOUT,
) -> RekeyResult:
    """Re-encrypt the store and its previous values from `old_key` to `new_key`."""
    if old_key == new_key:
        raise ConfigError(
            "MCP_NEW_ENCRYPTION_KEY is the same as MCP_ENCRYPTION_KEY; "
            "create a new key with `mcp-warden keygen`"
        )
    old, new = cipher(old_key), cipher(new_key)
    targets = (previous_path(store_path), store_path)
    journal = rekey_journal(store_path)
    with files.locked(store_path, lock_timeout):
        files.remove_stale_temps(store_path)
        files.remove_stale_temps(targets[0])
        start = _resume_point(journal, new)
        resumed = start is not None
        if start is None:
            states = [_classify(path, _entries(path), old, new) for path in targets]
            if all(state != "old" for state in states):
                return RekeyResult(len(_entries(store_path)), len(_entries(targets[0])), False)
            start = len(log.events())
            record = {"target_check": str(seal(_TARGET, new)), "log_lines": start}
            files.write_atomic(journal, files.dump_object(dict(record)))
        for path in targets:
            entries = _entries(path)
            if _classify(path, entries, old, new) == "old":
                files.write_atomic(path, files.dump_object(_reencrypt(path, entries, old, new)))
        logged = {e.credential for e in log.events()[start:] if e.action == "rekeyed"}
        names = list(_entries(store_path))
        for name in names:
            if name not in logged:
                log.append(name, "rekeyed")
        files.remove(journal)
        return RekeyResult(len(names), len(_entries(targets[0])), resumed)


def _resume_point(journal: Path, new: AESGCM) -> int | None:
    """The log line count of an interrupted job to the same key, or None when none is pending."""
    record = files.read_object(journal)
    if record is None:
        return None
    check, start = record.get("target_check"), record.get("log_lines")
    if not isinstance(check, str) or not isinstance(start, int):
        raise CorruptStore(f"{journal} is not a re-key journal mcp-warden wrote; restore it")
    try:
        Envelope.parse(check).open(new)
    except (InvalidEnvelope, DecryptionFailed):
        raise RekeyPending(
            f"{journal} records an interrupted re-key to a different key; re-run with the "
            "MCP_NEW_ENCRYPTION_KEY used then"
        ) from None
    return start


def _entries(path: Path) -> dict[str, object]:
    return files.read_object(path) or {}


def _classify(path: Path, entries: dict[str, object], old: AESGCM, new: AESGCM) -> State:
    """Which single key every entry of a file opens under; a named error otherwise."""
    under: dict[str, list[str]] = {"old": [], "new": []}
    for name in entries:
        envelope = envelope_of(path, name, entries)
        for label, aead in (("old", old), ("new", new)):
            try:
                envelope.open(aead)
            except DecryptionFailed:
                continue
            under[label].append(name)
            break
        else:
            raise DecryptionFailed(
                f"entry {name!r} of {path} opens under neither MCP_ENCRYPTION_KEY nor "
                "MCP_NEW_ENCRYPTION_KEY (a wrong key or a tampered entry); fix the keys, or "
                "restore or delete that entry, then re-run `mcp-warden cred rekey`"
            )
    if under["old"] and under["new"]:
        raise CorruptStore(
            f"{path} mixes keys ({under['old'][0]!r} under the old, {under['new'][0]!r} under "
            "the new); it was changed outside mcp-warden: restore it from a backup"
        )
    return "old" if under["old"] else "new" if under["new"] else "empty"


def _reencrypt(
    path: Path, entries: dict[str, object], old: AESGCM, new: AESGCM
) -> dict[str, object]:
    return {name: str(seal(envelope_of(path, name, entries).open(old), new)) for name in entries}
