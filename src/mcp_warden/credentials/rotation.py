"""Rotation: the tutorial's step 3, made crash-safe and auditable.

Every change of a credential goes through `Rotator`, which holds the store's
writers' lock for the whole change and

* keeps the value being replaced or deleted, encrypted under the same key,
  in ``<store>.previous`` beside the store (same ``{name: envelope}`` format,
  never inside the store), so `rollback` can undo one bad rotation;
* appends one line to the rotation log (`auditlog`) after the store changed.

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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcp_warden.config import Settings
from mcp_warden.credentials import files
from mcp_warden.credentials.auditlog import LogEvent, RotationLog
from mcp_warden.credentials.errors import CredentialNotFound, RotationCheckFailed
from mcp_warden.credentials.store import CredentialStore, Transaction, check_name, not_found
from mcp_warden.errors import WardenError

Check = Callable[[str], None]
"""A pre-commit check of a new value (for example a test call upstream); raises to refuse."""

_SETS_VALUE = frozenset({"created", "rotated", "imported"})


def previous_path(store_path: Path) -> Path:
    """Where the previous value of each credential is kept (beside the store)."""
    return store_path.with_name(store_path.name + ".previous")


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
        return cls(
            CredentialStore.from_settings(settings),
            RotationLog(settings.rotation_log, settings.actor),
        )

    def set(self, name: str, value: str) -> str:
        """Create or replace `name`; returns the logged action (created or rotated)."""
        check_name(name)
        with self.store.transaction() as txn:
            action = "rotated" if txn.raw(name) is not None else "created"
            self._replace(txn, name, value)
            self.log.append(name, action)
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
        with self.store.transaction() as txn:
            if txn.raw(name) is None:
                raise not_found(self.store.path, name)
            self._replace(txn, name, value)
            self.log.append(name, "rotated")

    def rollback(self, name: str) -> None:
        """Swap `name` with its kept previous value (so a second rollback redoes)."""
        with self.store.transaction() as txn:
            previous = self._read_previous()
            if name not in previous:
                raise CredentialNotFound(
                    f"no previous value of {name!r} is kept in {self.previous_path} (it was "
                    "never rotated, or was rolled back already); set it again instead"
                )
            txn.decrypt_from(self.previous_path, name, previous)  # it must open, or nothing moves
            current = txn.raw(name) if txn.opens(name) else None
            txn.put_envelope(name, str(previous[name]))
            txn.commit()
            if current is None:
                del previous[name]
            else:
                previous[name] = current
            self._write_previous(previous)
            self.log.append(name, "rolled_back")

    def delete(self, name: str) -> None:
        """Remove `name`; its value is kept as the previous value (rollback restores it)."""
        with self.store.transaction() as txn:
            if txn.opens(name):
                self._keep_previous({name: txn.raw(name)})
            txn.remove(name)
            txn.commit()
            self.log.append(name, "deleted")

    def import_values(self, values: Mapping[str, str]) -> list[str]:
        """Add or replace many credentials in one atomic write, each logged `imported`."""
        names = [check_name(name) for name in values]
        with self.store.transaction() as txn:
            self._keep_previous({n: txn.raw(n) for n in names if txn.opens(n)})
            for name in names:
                txn.put(name, values[name])
            txn.commit()
            for name in names:
                self.log.append(name, "imported")
        return names

    def ages(self) -> list[CredentialAge]:
        """The age of every credential in the store, in file order."""
        return credential_ages(self.store.path, self.log)

    def due(self, name: str, max_age_days: int = 30, now: datetime | None = None) -> bool:
        """Whether `name` is due for rotation (age >= max_age_days days, or unknown)."""
        if name not in self.store.names():
            raise not_found(self.store.path, name)
        set_at = value_times(self.log.events()).get(name)
        return CredentialAge(name, set_at).is_due(max_age_days, now or datetime.now(UTC))

    def _replace(self, txn: Transaction, name: str, value: str) -> None:
        if txn.opens(name):
            self._keep_previous({name: txn.raw(name)})
        txn.put(name, value)
        txn.commit()

    def _keep_previous(self, values: Mapping[str, object]) -> None:
        if values:
            previous = self._read_previous()
            previous.update(values)
            self._write_previous(previous)

    def _read_previous(self) -> dict[str, object]:
        return files.read_object(self.previous_path) or {}

    def _write_previous(self, entries: dict[str, object]) -> None:
        files.write_atomic(self.previous_path, files.dump_object(entries))


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
