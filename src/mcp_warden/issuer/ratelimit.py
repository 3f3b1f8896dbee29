"""Failed client authentication, limited per client and per address (429 with Retry-After).

A token bucket per key (the client_id a request claims, and the peer
address): each failed authentication takes one token, and the bucket
refills at MCP_ISSUER_AUTH_FAILURES per minute up to that many. A request
whose client or address has an empty bucket is answered 429 before its
credentials are even checked, so guessing secrets costs a minute per
handful of guesses; successful requests take nothing.

The buckets live in this process: with N issuer processes behind a load
balancer an attacker gets up to N times the rate. That bounds online
guessing well enough here, because secrets carry 256 bits and assertions
are signatures: the limit is there to keep logs and CPU quiet, not to
protect a guessable secret. The table holds at most MAX_KEYS keys; the
least recently failed ones are forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

MAX_KEYS = 100_000
WINDOW_SECONDS = 60.0


class FailureLimiter:
    """Token buckets of failed authentications, keyed by client or address."""

    def __init__(self, per_minute: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / WINDOW_SECONDS  # tokens per second
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds until every one of `keys` may try again, or None when none is limited."""
        now = self._monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                tokens = self._tokens(key, now)
                if tokens < 1.0:
                    wait = max(wait, (1.0 - tokens) / self._rate)
        return math.ceil(wait) if wait > 0 else None

    def failed(self, keys: Iterable[str]) -> None:
        """Take one token from each key's bucket (a failed authentication)."""
        now = self._monotonic()
        with self._lock:
            for key in keys:
                tokens = self._tokens(key, now)
                self._buckets.pop(key, None)  # re-inserted last: the dict is oldest-first
                self._buckets[key] = (max(tokens - 1.0, 0.0), now)
                while len(self._buckets) > MAX_KEYS:
                    self._buckets.pop(next(iter(self._buckets)))

    def _tokens(self, key: str, now: float) -> float:
        held = self._buckets.get(key)
        if held is None:
            return self._capacity
        tokens, since = held
        return min(self._capacity, tokens + (now - since) * self._rate)
