"""What a shared revocation store exchanges with a reader: batches of entries, one error.

`SyncedDenylist` (sync.py) reads a `Store` and keeps the in-process view;
sqlite.py and redis.py are the two stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from mcp_warden.errors import WardenError

Kind = Literal["jti", "sub"]


class RevocationStoreError(WardenError):
    """The shared revocation store could not be opened, read or written."""


class RevocationUnconfirmed(RevocationStoreError):
    """A write reached the store, but not the replicas that make it survive a failover."""


@dataclass
class Entries:
    """A batch of revocations: `jtis` maps jti -> exp, `subs` maps sub -> revoked-at."""

    jtis: dict[str, int] = field(default_factory=dict)
    subs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def one(cls, kind: Kind, key: str, value: int) -> Entries:
        """A batch of one new revocation; an empty id or a non-integer time is refused here,
        before it reaches any view or store."""
        if not isinstance(key, str):
            raise TypeError(f"{kind} must be a string")
        if not key:
            raise ValueError(f"{kind} must not be empty")
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"the time for {kind} must be whole seconds since the epoch")
        entries = cls()
        entries.add(kind, key, value)
        return entries

    def add(self, kind: str, key: str, value: int) -> None:
        """Merge one entry ("jti" or "sub"), keeping the largest value."""
        if kind not in ("jti", "sub"):
            raise ValueError(f"unknown revocation kind {kind!r}")
        target = self.jtis if kind == "jti" else self.subs
        if target.get(key, value) <= value:
            target[key] = value

    def __len__(self) -> int:
        return len(self.jtis) + len(self.subs)


class Store(Protocol):
    """A shared store of revocations, read by one `SyncedDenylist` (which owns its cursor).

    Every method raises RevocationStoreError (and only that) when the store
    fails. A store keeps an entry exactly as long as rules.Expiry says.
    """

    @property
    def description(self) -> str:
        """Where the store is, for messages ("Redis at host:port"); never a password."""

    def load(self, now: int) -> Entries:
        """Every unexpired entry, and move the cursor to the store's current end."""

    def changes(self, *, resume: bool = False) -> Entries | None:
        """Entries written after the cursor (advancing it), or None when the store was reset
        (emptied, replaced or rolled back behind the cursor): the reader then reloads.

        `resume`: the previous read failed; return None too unless the store can
        show that nothing written after the cursor was lost meanwhile.
        """

    def put(self, entries: Entries, now: int) -> None:
        """Record new revocations for every reader's next `changes()`, and purge expired ones."""

    def restore(self, entries: Entries, now: int) -> None:
        """Record many entries at once (a write-back after a reset, a bulk import).

        A store may make every reader reload instead of feeding the entries to `changes()`.
        """

    def close(self) -> None:
        """Release connections."""
