"""The in-process view of the denylist, and the thread that keeps it in sync with a shared store.

Every request asks `is_revoked`, so the answer must come from memory: two dicts
(`jti -> exp`, `sub -> at`) read without a lock (a dict lookup is atomic under
the GIL). A daemon thread pulls what changed in the shared store every
`refresh` seconds; a store reads its changes incrementally (rows or stream
entries after a cursor), so a sync costs what changed, not the list's size.

The view only grows by merging (an entry never moves back: `max` of the
values), so a store that lost data cannot make a process forget a revocation
it knew. After a failed sync the next read first checks that nothing was lost
meanwhile; the view reloads in full at start and whenever the store cannot
show that (it was reset, rolled back, or trimmed past the cursor). When a
reload finds entries the view has and the store lacks, they are written back.

Entries leave the view when no token they concern can still be accepted: a
jti at `exp + leeway`, a sub at `at + max_ttl + leeway` (a token of that sub
issued at or before `at` has `exp <= at + max_ttl`). Expiry is kept in
per-second buckets ordered by a heap, so a purge costs what expired.

When the store cannot be read, the view keeps answering for `stale` seconds
after the last successful sync; after that a token the view does not know as
revoked is refused with TokenError("revocation_unavailable"): the verifier
never accepts a token it cannot check.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import Protocol

from mcp_warden.errors import WardenError
from mcp_warden.tokens.errors import TokenError

Clock = Callable[[], float]

log = logging.getLogger("mcp_warden.revocation")


class RevocationStoreError(WardenError):
    """The shared revocation store could not be opened, read or written."""


@dataclass
class Entries:
    """A batch of revocations: `jtis` maps jti -> exp, `subs` maps sub -> revoked-at."""

    jtis: dict[str, int] = field(default_factory=dict)
    subs: dict[str, int] = field(default_factory=dict)

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

    Every method raises RevocationStoreError (and only that) when the store fails.
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


class _ExpiringMap:
    """`values: dict[str, int]` whose entries leave once `value + lifetime < now`."""

    def __init__(self, lifetime: int) -> None:
        self.values: dict[str, int] = {}
        self._lifetime = lifetime
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []

    def put(self, key: str, value: int) -> None:
        old = self.values.get(key)
        if old is not None and old >= value:
            return
        self.values[key] = value
        due = value + self._lifetime
        bucket = self._buckets.get(due)
        if bucket is None:
            self._buckets[due] = bucket = []
            heapq.heappush(self._heap, due)
        bucket.append(key)

    def expired(self, value: int, now: int) -> bool:
        return value + self._lifetime < now

    def purge(self, now: int) -> int:
        removed = 0
        while self._heap and self._heap[0] < now:
            for key in self._buckets.pop(heapq.heappop(self._heap)):
                value = self.values.get(key)
                # A key whose value grew since sits in a later bucket too: keep it.
                if value is not None and self.expired(value, now):
                    del self.values[key]
                    removed += 1
        return removed

    def missing_from(self, other: dict[str, int], now: int) -> dict[str, int]:
        """Unexpired entries `other` lacks or holds with a smaller value."""
        return {
            key: value
            for key, value in self.values.items()
            if other.get(key, -1) < value and not self.expired(value, now)
        }


class RevocationView:
    """The denylist in this process. Writers hold `lock`; readers use `jtis`/`subs` directly."""

    def __init__(self, *, max_ttl: int, leeway: int) -> None:
        self._jtis = _ExpiringMap(leeway)
        self._subs = _ExpiringMap(max_ttl + leeway)
        self.jtis = self._jtis.values
        self.subs = self._subs.values
        self.lock = threading.Lock()

    def contains(self, jti: str, sub: str, iat: int) -> bool:
        if jti in self.jtis:
            return True
        at = self.subs.get(sub)
        return at is not None and iat <= at

    def merge(self, entries: Entries) -> None:
        with self.lock:
            for jti, exp in entries.jtis.items():
                self._jtis.put(jti, exp)
            for sub, at in entries.subs.items():
                self._subs.put(sub, at)

    def purge(self, now: int) -> int:
        with self.lock:
            return self._jtis.purge(now) + self._subs.purge(now)

    def missing_from(self, store: Entries, now: int) -> Entries:
        """What this view knows (unexpired) that `store` lacks: to write back after a reset."""
        with self.lock:
            return Entries(
                self._jtis.missing_from(store.jtis, now), self._subs.missing_from(store.subs, now)
            )

    def __len__(self) -> int:
        return len(self.jtis) + len(self.subs)


def check_entry(key: str, value: int, what: str) -> None:
    """Refuse an empty id or a non-integer time before it reaches any store."""
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a string")
    if not key:
        raise ValueError(f"{what} must not be empty")
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"the time for {what} must be whole seconds since the epoch")


class SyncedDenylist:
    """A Denylist answered from a `RevocationView`, synced from a shared `Store` by a thread."""

    def __init__(
        self,
        store: Store,
        *,
        max_ttl: int,
        leeway: int,
        refresh: float,
        stale: float,
        clock: Clock = time.time,
        follow: bool = True,
    ) -> None:
        """`follow=False`: neither load nor follow the shared list (a process that only
        revokes, such as `mcp-warden token revoke`); `is_revoked` then refuses every
        token it did not revoke itself with `revocation_unavailable`.
        """
        self._store = store
        self._view = RevocationView(max_ttl=max_ttl, leeway=leeway)
        self._jtis = self._view.jtis
        self._subs = self._view.subs
        self._refresh = refresh
        self._stale = stale
        self._clock = clock
        self._started = monotonic()
        self._last_sync: float | None = None
        self._fresh_until = -math.inf
        self._reload = True  # load everything at the next sync
        self._resume = False  # the last sync failed: check continuity before reading on
        self._failing = False
        self.reloads = 0  # full loads so far (1 after a successful start)
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not follow:
            return
        try:
            self.sync()
        except RevocationStoreError as exc:
            self._note_failure(exc)
        self._thread = threading.Thread(target=self._run, name="revocation-sync", daemon=True)
        self._thread.start()

    @property
    def store(self) -> Store:
        return self._store

    def revoke_jti(self, jti: str, exp: int) -> None:
        check_entry(jti, exp, "jti")
        self._revoke(Entries(jtis={jti: exp}), f"jti {jti!r}")

    def revoke_sub(self, sub: str, at: int) -> None:
        check_entry(sub, at, "sub")
        self._revoke(Entries(subs={sub: at}), f"every token of sub {sub!r}")

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        if jti in self._jtis:
            return True
        at = self._subs.get(sub)
        if at is not None and iat <= at:
            return True
        if monotonic() >= self._fresh_until:
            raise self._unavailable()
        return False

    def sync(self) -> None:
        """Pull what changed in the store now (the background thread calls this)."""
        with self._sync_lock:
            now = int(self._clock())
            try:
                changes = None if self._reload else self._store.changes(resume=self._resume)
                if changes is None:
                    self._reload = True
                    self._reload_all(now)
                else:
                    self._view.merge(changes)
            except RevocationStoreError:
                self._resume = True
                raise
            self._reload = self._resume = False
            self._last_sync = monotonic()
            self._fresh_until = self._last_sync + self._stale
            self._view.purge(now)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=self._refresh + 10)
        self._store.close()

    def __len__(self) -> int:
        return len(self._view)

    def _revoke(self, entries: Entries, what: str) -> None:
        # This process refuses the token at once, whatever happens to the store.
        self._view.merge(entries)
        try:
            self._store.put(entries, int(self._clock()))
        except RevocationStoreError as exc:
            raise RevocationStoreError(
                f"the revocation of {what} was NOT recorded in {self._store.description} ({exc}); "
                "only this process refuses it, other processes still accept it: "
                "retry once the store is reachable"
            ) from exc

    def _reload_all(self, now: int) -> None:
        stored = self._store.load(now)
        self.reloads += 1
        missing = self._view.missing_from(stored, now)
        self._view.merge(stored)
        if missing:
            log.warning(
                "%s lacks %d unexpired revocations this process knows (was it reset?); "
                "writing them back",
                self._store.description,
                len(missing),
            )
            self._store.restore(missing, now)

    def _unavailable(self) -> TokenError:
        if self._last_sync is None:
            since = f"{monotonic() - self._started:.0f} s (not read since start)"
        else:
            since = f"{monotonic() - self._last_sync:.0f} s"
        return TokenError(
            "revocation_unavailable",
            f"cannot reach {self._store.description} since {since}; "
            "refusing tokens until it is back",
        )

    def _note_failure(self, exc: RevocationStoreError) -> None:
        if not self._failing:
            log.warning("revocation sync failed, answering from the last view: %s", exc)
        self._failing = True

    def _run(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self.sync()
            except RevocationStoreError as exc:
                self._note_failure(exc)
                continue
            except Exception:
                log.exception("revocation sync failed unexpectedly")
                continue
            if self._failing:
                log.warning("revocation sync recovered: %s", self._store.description)
                self._failing = False
