"""The thread that keeps this process's view in sync with a shared store.

A daemon thread pulls what changed in the shared store every `refresh`
seconds; a store reads its changes incrementally (rows or stream entries
after a cursor), so a sync costs what changed, not the list's size. After a
failed sync the next read first checks that nothing was lost meanwhile; the
view reloads in full at start and whenever the store cannot show that (it
was reset, rolled back, or trimmed past the cursor). When a reload finds
entries the view has and the store lacks, they are written back.

When the store cannot be read, the view stays fresh for `stale` seconds after
the last successful sync (by the injectable monotonic clock); after that a
token the view does not know as revoked is refused with
TokenError("revocation_unavailable"): the verifier never accepts a token it
cannot check.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from mcp_warden.metrics import catalog as metrics
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.revocation.rules import Clock, Expiry
from mcp_warden.tokens.revocation.store import (
    Entries,
    RevocationStoreError,
    RevocationUnconfirmed,
    Store,
)
from mcp_warden.tokens.revocation.view import RevocationView

log = logging.getLogger("mcp_warden.revocation")


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
        monotonic: Clock = time.monotonic,
        follow: bool = True,
    ) -> None:
        """`clock` dates entries and purges; `monotonic` times freshness.

        `follow=False`: neither load nor follow the shared list (a process that only
        revokes, such as `mcp-warden token revoke`); it is never fresh, so
        `is_revoked` refuses every token it did not revoke itself with
        `revocation_unavailable`.
        """
        self._store = store
        self._view = RevocationView(Expiry(max_ttl=max_ttl, leeway=leeway))
        self._refresh = refresh
        self._stale = stale
        self._clock = clock
        self._monotonic = monotonic
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
        self._revoke(Entries.one("jti", jti, exp), f"jti {jti!r}")

    def revoke_sub(self, sub: str, at: int) -> None:
        self._revoke(Entries.one("sub", sub, at), f"every token of sub {sub!r}")

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        if self._view.contains(jti, sub, iat):
            return True
        if self.fresh():
            return False
        raise self._unavailable()

    def fresh(self) -> bool:
        """True while the last successful sync is less than `stale` seconds old."""
        return self._monotonic() < self._fresh_until

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
            self._last_sync = self._monotonic()
            self._fresh_until = self._last_sync + self._stale
            self._view.purge(now)
            metrics.revocation_synced(self._store, len(self._view))

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
        except RevocationUnconfirmed as exc:
            raise RevocationUnconfirmed(
                f"the revocation of {what} reached {self._store.description} but is not "
                f"confirmed: {exc}; servers reading it refuse the token, yet a failover before "
                "a replica has it would lose it: retry once the replicas are back"
            ) from exc
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
            since = f"{self._monotonic() - self._started:.0f} s (not read since start)"
        else:
            since = f"{self._monotonic() - self._last_sync:.0f} s"
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
