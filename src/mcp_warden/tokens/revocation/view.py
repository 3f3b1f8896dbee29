"""The denylist in this process: what `is_revoked` reads on every request.

Two dicts (`jti -> exp`, `sub -> at`) read without a lock (a dict lookup is
atomic under the GIL); writers merge under a lock. The view only grows by
merging (an entry never moves back: `max` of the values), so a store that
lost data cannot make a process forget a revocation it knew. Entries leave
by rules.Expiry; expiry is kept in per-second buckets ordered by a heap, so a
purge costs what expired.
"""

from __future__ import annotations

import heapq
import threading

from mcp_warden.tokens.revocation.rules import Expiry, Lifetime, expired
from mcp_warden.tokens.revocation.store import Entries


class _ExpiringMap:
    """`values: dict[str, int]` whose entries leave once their `lifetime` is over."""

    def __init__(self, lifetime: Lifetime) -> None:
        self.values: dict[str, int] = {}
        self._lifetime = lifetime
        self._buckets: dict[int, list[str]] = {}  # expires_at -> keys
        self._heap: list[int] = []

    def put(self, key: str, value: int) -> None:
        old = self.values.get(key)
        if old is not None and old >= value:
            return
        self.values[key] = value
        due = self._lifetime.expires_at(value)
        bucket = self._buckets.get(due)
        if bucket is None:
            self._buckets[due] = bucket = []
            heapq.heappush(self._heap, due)
        bucket.append(key)

    def purge(self, now: int) -> int:
        removed = 0
        while self._heap and expired(self._heap[0], now):
            for key in self._buckets.pop(heapq.heappop(self._heap)):
                value = self.values.get(key)
                # A key whose value grew since sits in a later bucket too: keep it.
                if value is not None and not self._lifetime.live(value, now):
                    del self.values[key]
                    removed += 1
        return removed

    def missing_from(self, other: dict[str, int], now: int) -> dict[str, int]:
        """Live entries `other` lacks or holds with a smaller value."""
        return {
            key: value
            for key, value in self.values.items()
            if other.get(key, -1) < value and self._lifetime.live(value, now)
        }


class RevocationView:
    """The denylist in this process. Writers hold `lock`; readers call `contains`."""

    def __init__(self, expiry: Expiry) -> None:
        self._jtis = _ExpiringMap(expiry.jti)
        self._subs = _ExpiringMap(expiry.sub)
        self.jtis = self._jtis.values
        self.subs = self._subs.values
        self.lock = threading.Lock()

    def contains(self, jti: str, sub: str, iat: int) -> bool:
        """The check: the jti is listed, or its sub was revoked at or after the token's iat."""
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
        """What this view knows (live) that `store` lacks: to write back after a reset."""
        with self.lock:
            return Entries(
                self._jtis.missing_from(store.jtis, now), self._subs.missing_from(store.subs, now)
            )

    def __len__(self) -> int:
        return len(self.jtis) + len(self.subs)
