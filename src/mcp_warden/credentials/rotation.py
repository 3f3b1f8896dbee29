"""Rotation: the tutorial's step 3, made crash-safe and auditable.

Every change of a credential goes through `Rotator`, which holds the store's
writers' lock for the whole change and

* keeps the value being replaced or deleted, encrypted under the same key,
  in ``<store>.previous`` beside the store (same ``{name: envelope}`` format,
  never inside the store), so `rollback` can undo one bad rotation;
* keeps the entry bindings (`bindings`) in step, binding any entry a Node
  writer added or replaced (logged `bound`);
* appends one line to the rotation log (`auditlog`) after the store changed,
  having checked before the change that the log accepts its lines (its last
  line authenticates under the key), so no change is left unlogged for that.

Order of the writes, so that a crash between any two keeps every value that
is still needed: a value is written to the file that receives it before it
is removed from the file that loses it. `rotate` and `delete` write
``.previous`` first, then the store; `rollback` writes the store first, then
``.previous``. The log line comes last: a crash just before it leaves a change
without its line, which makes `due` see the credential as older than it is
(the safe direction) rather than a logged rotation that never happened.

Ages come from the log: the time of the event that set each current value
(`created`, `rotated`, `imported`; `rolled_back` brings back the previous
value's time). A credential with no such event is due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcp_warden.config import DEFAULTS, Settings
from mcp_warden.credentials import files
from mcp_warden.credentials.auditlog import LogEvent, RotationLog
from mcp_warden.credentials.bindings import Status
from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.errors import BindingMismatch, CredentialNotFound, RotationCheckFailed
from mcp_warden.credentials.store import (
    CredentialStore,
    Transaction,
    check_name,
    not_found,
    previous_path,
)
from mcp_warden.errors import WardenError

Check = Callable[[str], None]
"""A pre-commit check of a new value (for example a test call upstream); raises to refuse."""

_SETS_VALUE = frozenset({"created", "rotated", "imported"})


@dataclass(frozen=True)
class CredentialAge:
    """When the current value of a credential was set, according to the log."""

    name: str
    set_at: datetime | None

    def age(self, now: datetime) -> timedelta | None:
        return None if self.set_at is None else now - self.set_at

    def is_due(self, max_age_days: int, now: datetime) -> bool:
        """Due when its age in whole days reaches `max_age_days`, or when it is unknown."""
        age = self.age(now)
        return age is None or age.days >= max_age_days


class Rotator:
    """Logged, rollback-able changes to a credential store."""

    def __init__(self, store: CredentialStore, log: RotationLog) -> None:
        self.store = store
        self.log = log
        self.previous_path = previous_path(store.path)

    @classmethod
    def from_settings(cls, settings: Settings) -> Rotator:
        key = parse_key(settings.require_encryption_key())
        return cls(
            CredentialStore.from_settings(settings),
            RotationLog(settings.rotation_log, settings.actor, key=key),
        )

    def set(self, name: str, value: str) -> str:
        """Create or replace `name`; returns the logged action (created or rotated)."""
        check_name(name)
        with self._transaction() as txn:
            action = "rotated" if txn.raw(name) is not None else "created"
            self._replace(txn, name, value)
            self._logged(txn, (name, action))
        return action

    def rotate(self, name: str, value: str, *, check: Check | None = None) -> None:
        """Replace an existing credential, after `check(value)` passes (if given).

        A failed check is logged as `rotate_failed` and changes nothing. The
        check runs before the lock is taken, so a slow upstream does not block
        other writers.
        """
        if name not in self.store.names():
            raise not_found(self.store.path, name)
        if check is not None:
            try:
                check(value)
            except Exception as exc:
                self.log.append(name, "rotate_failed")
                reason = str(exc) if isinstance(exc, WardenError) else type(exc).__name__
                raise RotationCheckFailed(
                    f"the new value of {name!r} failed its check ({reason}); nothing was changed"
                ) from None
        with self._transaction() as txn:
            if txn.raw(name) is None:
                raise not_found(self.store.path, name)
            self._replace(txn, name, value)
            self._logged(txn, (name, "rotated"))

    def rollback(self, name: str) -> None:
        """Swap `name` with its kept previous value (so a second rollback redoes)."""
        with self._transaction() as txn:
            previous = txn.previous
            if name not in previous:
                raise CredentialNotFound(
                    f"no previous value of {name!r} is kept in {self.previous_path} (it was "
                    "never rotated, or was rolled back already); set it again instead"
                )
            txn.decrypt_from(self.previous_path, name, previous)  # it must open, or nothing moves
            verdict = txn.verdict(name, "previous")
            if verdict.status is Status.SWAPPED:
                raise BindingMismatch(
                    f"the previous value of {name!r} in {self.previous_path} holds "
                    f"{verdict.source}, not an old value of {name!r}; nothing was changed: "
                    f"set {name!r} with `mcp-warden cred set {name}` instead"
                )
            current = txn.raw(name) if txn.trusted(name) else None
            txn.put_envelope(name, str(previous[name]))
            if current is None:
                txn.drop_previous(name)
            else:
                txn.keep_previous({name: current})
            txn.commit(store_first=True)
            self._logged(txn, (name, "rolled_back"))

    def delete(self, name: str) -> None:
        """Remove `name`; its value is kept as the previous value (rollback restores it)."""
        with self._transaction() as txn:
            if txn.trusted(name):
                txn.keep_previous({name: txn.raw(name)})
            txn.remove(name)
            txn.commit()
            self._logged(txn, (name, "deleted"))

    def import_values(self, values: Mapping[str, str]) -> list[str]:
        """Add or replace many credentials in one atomic write, each logged `imported`."""
        names = [check_name(name) for name in values]
        with self._transaction() as txn:
            txn.keep_previous({n: txn.raw(n) for n in names if txn.trusted(n)})
            for name in names:
                txn.put(name, values[name])
            txn.commit()
            self._logged(txn, *((name, "imported") for name in names))
        return names

    def bind(self) -> list[str]:
        """Bind every unbound entry that opens (an operator accepts Node's writes); logged."""
        with self._transaction() as txn:
            txn.bind_unbound()
            txn.commit()
            self._logged(txn)
            return list(txn.newly_bound)

    def ages(self) -> list[CredentialAge]:
        """The age of every credential in the store, in file order."""
        return credential_ages(self.store.path, self.log)

    def due(
        self,
        name: str,
        max_age_days: int = DEFAULTS.rotation_max_age_days,
        now: datetime | None = None,
    ) -> bool:
        """Whether `name` is due for rotation (age >= max_age_days days, or unknown)."""
        if name not in self.store.names():
            raise not_found(self.store.path, name)
        set_at = value_times(self.log.events()).get(name)
        return CredentialAge(name, set_at).is_due(max_age_days, now or datetime.now(UTC))

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        """The store's transaction, once the log is known to accept our lines."""
        with self.store.transaction() as txn:
            self.log.check_head()
            yield txn

    def _replace(self, txn: Transaction, name: str, value: str) -> None:
        if txn.trusted(name):
            txn.keep_previous({name: txn.raw(name)})
        txn.put(name, value)
        txn.commit()

    def _logged(self, txn: Transaction, *events: tuple[str, str]) -> None:
        """Log the change, then each entry the commit bound (it accepted a Node write)."""
        for name, action in events:
            self.log.append(name, action)
        for name in txn.newly_bound:
            self.log.append(name, "bound")


def credential_ages(store_path: Path, log: RotationLog) -> list[CredentialAge]:
    """The age of every credential in the store file (needs no key: names are not secret)."""
    times = value_times(log.events())
    return [CredentialAge(name, times.get(name)) for name in files.read_object(store_path) or {}]


def value_times(events: Iterable[LogEvent]) -> dict[str, datetime]:
    """Replay the log: when was each credential's current value set?"""
    current: dict[str, datetime | None] = {}
    previous: dict[str, datetime | None] = {}
    for event in events:
        name = event.credential
        if event.action in _SETS_VALUE:
            previous[name], current[name] = current.get(name), event.time
        elif event.action == "rolled_back":
            current[name], previous[name] = previous.get(name), current.get(name)
        elif event.action == "deleted":
            previous[name], current[name] = current.get(name), None
    return {name: when for name, when in current.items() if when is not None}
