"""Re-keying: the store, its previous values, their bindings and the log under a new key.

Two files hold ciphertext: the store and ``<store>.previous``. Each is
re-encrypted in memory and replaced by one atomic rename, so each file is
wholly under the old key or wholly under the new one at every moment, never
a mix. The scheme, all under the store's writers' lock:

1. Without a journal: check that every entry of both files opens under the
   old key (a bad entry is named and stops the job before anything is
   written), that the rotation log verifies under the old key (re-signing
   must never launder a forged line) and that no entry holds a swapped
   envelope; bind entries a Node writer added (logged `bound`). Then write
   the journal ``<store>.rekey``: a fixed text sealed under the new key (it
   identifies the target key without storing it) and the log's line count.
   While the journal exists, every other writer refuses with RekeyPending,
   so nothing can add old-key ciphertext.
2. The bindings file listing old-key and new-key MACs, then ``.previous``,
   then the store (a file whose entries all open under the new key is done;
   one whose entries all open under the old key is re-encrypted and
   replaced), then the bindings under the new key alone (see `bindings`:
   readers given both keys never see a pair that disagrees).
3. The rotation log re-signed under the new key (`RotationLog.rewrite`, one
   atomic replace), unless it already verifies under it.
4. One ``rekeyed`` log line per credential, skipping any already written
   after the journal's line count (a crash during this step).
5. Remove the journal.

A crash at any moment leaves every file readable with the old key or with
the new key. Re-running `mcp-warden cred rekey` with the same two keys finds
the journal, recognises finished files by their opening under the new key,
and completes the job; with a different new key it refuses and says so.
Servers that have MCP_NEW_ENCRYPTION_KEY beside MCP_ENCRYPTION_KEY read (and
check bindings) under either key (`CredentialStore.from_settings`), so they
keep serving through a re-key; restart them afterwards with the new key alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_warden.credentials import bindings, files
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.bindings import Binder, Bindings, Section, Status, bindings_path
from mcp_warden.credentials.envelope import Envelope, cipher, seal
from mcp_warden.credentials.errors import (
    BindingMismatch,
    CorruptStore,
    DecryptionFailed,
    InvalidEnvelope,
    LogCorrupt,
    RekeyPending,
)
from mcp_warden.credentials.store import (
    Transaction,
    envelope_of,
    previous_path,
    rekey_journal,
    swapped_message,
)
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
    """Re-encrypt the store and its previous values from `old_key` to `new_key`, re-sign the log.

    `log` names the rotation log (its key does not matter: the log is read
    under `old_key` and `new_key`).
    """
    if old_key == new_key:
        raise ConfigError(
            "MCP_NEW_ENCRYPTION_KEY is the same as MCP_ENCRYPTION_KEY; "
            "create a new key with `mcp-warden keygen`"
        )
    old, new = cipher(old_key), cipher(new_key)
    old_log, new_log = log.under(old_key), log.under(new_key)
    targets = (previous_path(store_path), store_path)
    journal = rekey_journal(store_path)
    with files.locked(store_path, lock_timeout):
        files.refuse_link(journal, "the re-key journal")
        for target in (*targets, bindings_path(store_path)):
            files.remove_stale_temps(target)
        start = _resume_point(journal, new)
        resumed = start is not None
        if start is None:
            states = [_classify(path, _entries(path), old, new) for path in targets]
            if all(state != "old" for state in states):
                return RekeyResult(len(_entries(store_path)), len(_entries(targets[0])), False)
            _prepare(store_path, old, Binder(old_key), old_log)
            start = len(old_log.events())
            record = {"target_check": str(seal(_TARGET, new)), "log_lines": start}
            files.write_atomic(journal, files.dump_object(dict(record)))
        _reencrypt(store_path, (old, Binder(old_key)), (new, Binder(new_key)))
        try:
            new_log.verify()
        except LogCorrupt:
            old_log.rewrite(new_key)  # verifies under the old key first
        logged = {e.credential for e in new_log.events()[start:] if e.action == "rekeyed"}
        names = list(_entries(store_path))
        for name in names:
            if name not in logged:
                new_log.append(name, "rekeyed")
        files.remove(journal)
        return RekeyResult(len(names), len(_entries(targets[0])), resumed)


def _prepare(store_path: Path, old: AESGCM, binder: Binder, log: RotationLog) -> None:
    """Before the journal: the log verifies, no entry is swapped, unbound ones get bound."""
    try:
        log.verify()
    except LogCorrupt as exc:
        raise LogCorrupt(
            f"{exc}; nothing was re-keyed (a re-key re-signs the log, so it must verify first)"
        ) from None
    txn = Transaction.open(store_path, old, binder)
    sections: tuple[tuple[Section, list[str]], ...] = (
        ("entries", txn.names()),
        ("previous", list(txn.previous)),
    )
    for section, names in sections:
        for name in names:
            verdict = txn.verdict(name, section)
            if verdict.status is not Status.SWAPPED:
                continue
            if section == "entries":
                raise BindingMismatch(f"{swapped_message(store_path, name, verdict)}; then re-run")
            raise BindingMismatch(
                f"the previous value of {name!r} in {txn.previous_path} holds {verdict.source}; "
                "nothing was re-keyed: remove that entry from the file (or restore it from a "
                "backup), then re-run `mcp-warden cred rekey`"
            )
    txn.bind_unbound()
    txn.commit()
    for name in txn.newly_bound:
        log.append(name, "bound")


def _reencrypt(store_path: Path, old: tuple[AESGCM, Binder], new: tuple[AESGCM, Binder]) -> None:
    """Both files under the new key, with their bindings (old and new listed meanwhile)."""
    path_of_bindings = bindings_path(store_path)
    read = bindings.read(path_of_bindings)
    current = read[1] if read is not None else Bindings()
    final: dict[Section, dict[str, tuple[str, ...]]] = {"entries": {}, "previous": {}}
    plan: list[tuple[Path, dict[str, object]]] = []
    sections: tuple[tuple[Section, Path], ...] = (
        ("previous", previous_path(store_path)),
        ("entries", store_path),
    )
    for section, path in sections:
        entries = _entries(path)
        if _classify(path, entries, old[0], new[0]) == "old":
            sealed: dict[str, object] = {}
            for name in entries:
                bound = old[1].verdict(section, name, str(entries[name]), current)
                sealed[name] = str(seal(envelope_of(path, name, entries).open(old[0]), new[0]))
                if bound.status is Status.BOUND:
                    final[section][name] = (new[1].mac(section, name, str(sealed[name])),)
            plan.append((path, sealed))
            continue
        for name in entries:
            raw = str(entries[name])
            if new[1].verdict(section, name, raw, current).status is Status.BOUND:
                final[section][name] = (new[1].mac(section, name, raw),)
    target = Bindings(final["entries"], final["previous"])
    both = current.union(target)
    if plan and both != current:
        bindings.write(path_of_bindings, both)
    for path, sealed in plan:
        files.write_atomic(path, files.dump_object(sealed))
    if target != current:
        bindings.write(path_of_bindings, target)


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
