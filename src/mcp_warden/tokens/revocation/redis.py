"""Redis revocation store: one Redis shared by every replica on every host.

Keys (prefix `mcp-warden:revocation:`):

- `jti`, a sorted set jti -> exp, and `sub`, a sorted set sub -> revoked-at:
  the current list, which a replica loads in full (ZSCAN) only when it starts
  or cannot prove it missed nothing. `ZADD GT` keeps the largest value, so
  writes are idempotent and commute. Every write also removes, in the same
  MULTI, the members rules.Expiry says have expired: both sets hold only the
  revocations of the last token lifetime.
- `events`, a Stream with one entry per revocation, trimmed on every XADD
  with an exact `MINID` (by Redis's clock) to the last `Expiry.after_write`
  seconds (max_ttl + 2 * leeway): an older entry only concerns expired
  tokens. Replicas XREAD it from their last id, so a sync costs what changed
  since the previous one (MCP_REVOCATION_REFRESH_SECONDS ago), and a
  request's lookup never crosses the network.
- `epoch`, a random value set once (SET NX) and compared on every sync: a
  missing or different epoch means the data set was replaced (a Redis that
  restarted empty, a failover to another copy) and the replica reloads.

Per-jti keys with EXPIREAT would expire by themselves, but a replica could
only load them with a SCAN over the whole keyspace and could not read changes
incrementally; the sorted sets plus the stream give both.

Redis unreachable: replicas answer from their view for
`MCP_REVOCATION_STALE_SECONDS` after their last successful sync, then refuse
every token they do not know as revoked (`revocation_unavailable`: fail
closed); `revoke_*` raises, because the revocation did not propagate (the
calling process applies it to its own view all the same).

Redis back: the first read checks that the epoch is the same and that the
stream still spans the replica's cursor (nothing trimmed past it, no
rollback behind it); then the replica simply reads on. Otherwise it reloads
in full, and if the store lacks unexpired revocations its view holds (a Redis
restarted without persistence), it writes them back and sets a new epoch,
so that every replica reloads and knows them again, including one started
in the meantime with an empty view. A replica started after the loss and
before any surviving replica wrote the list back misses those revocations
for about one refresh interval; if every replica restarted too, they are
gone. Run Redis with persistence (`appendonly yes`): a restart then keeps the
list and the epoch, and nothing needs writing back.

Failover (a `redis+sentinel://` URL, see mcp_warden.redisconn): the client
finds the promoted replica on its next connection. The replicated data set
keeps the epoch and the stream, so replicas read on from their cursors. With
`replicas` (MCP_REDIS_WAIT_REPLICAS; 1 for a Sentinel URL) `put` returns only
once that many replicas hold the write (redisconn.confirm), and raises
RevocationUnconfirmed otherwise: a revocation reported done is on a replica
that a failover can promote. `restore` does not wait: it writes back what
the replicas' views hold anyway, and a sync waiting on absent replicas would
let every view go stale.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from mcp_warden.redisconn import Unconfirmed, confirm, connect, mark
from mcp_warden.tokens.revocation.rules import Expiry
from mcp_warden.tokens.revocation.store import Entries, RevocationStoreError, RevocationUnconfirmed

__all__ = ["PREFIX", "RedisStore", "connect"]  # connect: redisconn's, for the benchmarks

PREFIX = "mcp-warden:revocation:"
_BATCH = 10_000


class RedisStore:
    """The `Store` on one Redis database."""

    def __init__(
        self,
        client: redis.Redis,
        where: str,
        *,
        max_ttl: int,
        leeway: int,
        prefix: str = PREFIX,
        replicas: int = 0,
    ) -> None:
        """`replicas`: how many replicas must hold a `put` before it returns (Redis WAIT)."""
        self._redis = client
        self._where = where
        self._prefix = prefix
        self._replicas = replicas
        self._expiry = Expiry(max_ttl=max_ttl, leeway=leeway)
        self._jti_key = prefix + "jti"
        self._sub_key = prefix + "sub"
        self._events_key = prefix + "events"
        self._epoch_key = prefix + "epoch"
        self._epoch: str | None = None
        self._cursor = "0-0"
        self._lock = threading.Lock()  # the cursor and epoch belong to the sync that holds it

    @property
    def description(self) -> str:
        return f"Redis at {self._where}"

    def load(self, now: int) -> Entries:
        with self._lock, self._errors("read"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._epoch_key, secrets.token_hex(16), nx=True)
            pipe.get(self._epoch_key)
            pipe.xrevrange(self._events_key, count=1)
            _, epoch, last = pipe.execute()
            # Entries added while we scan are also after this cursor: read twice, merged by max.
            entries = Entries(
                self._scan(self._jti_key, self._expiry.jti.oldest_live(now)),
                self._scan(self._sub_key, self._expiry.sub.oldest_live(now)),
            )
            self._epoch = epoch
            self._cursor = last[0][0] if last else "0-0"
        return entries

    def changes(self, *, resume: bool = False) -> Entries | None:
        entries = Entries()
        with self._lock, self._errors("read"):
            if resume and not self._continuous():
                return None
            while True:
                pipe = self._redis.pipeline(transaction=False)
                pipe.get(self._epoch_key)
                pipe.xread({self._events_key: self._cursor}, count=_BATCH)
                epoch, reply = pipe.execute()
                if epoch != self._epoch:
                    return None
                batch = reply[0][1] if reply else []
                for entry_id, fields in batch:
                    entries.add(fields["k"], fields["v"], int(fields["t"]))
                    self._cursor = entry_id
                if len(batch) < _BATCH:
                    return entries

    def _continuous(self) -> bool:
        """True when the stream still holds everything after the cursor (same data set)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(self._epoch_key)
        pipe.xrange(self._events_key, count=1)
        pipe.xrevrange(self._events_key, count=1)
        epoch, first, last = pipe.execute()
        if epoch != self._epoch:
            return False
        if not first:
            return self._cursor == "0-0"
        cursor = _stream_id(self._cursor)
        # Entries after the cursor trimmed away, or a data set rolled back behind it.
        return _stream_id(first[0][0]) <= cursor <= _stream_id(last[0][0])

    def put(self, entries: Entries, now: int) -> None:
        with self._errors("write"):
            # Stream ids are the server's milliseconds: trim by its clock, not ours.
            seconds, micros = self._redis.time()
            floor_ms = (seconds - self._expiry.after_write) * 1000 + micros // 1000
            pipe = self._redis.pipeline(transaction=True)
            if entries.jtis:
                pipe.zadd(self._jti_key, entries.jtis, gt=True)
            if entries.subs:
                pipe.zadd(self._sub_key, entries.subs, gt=True)
            self._purge(pipe, now)
            for kind, values in (("jti", entries.jtis), ("sub", entries.subs)):
                for key, value in values.items():
                    pipe.xadd(
                        self._events_key,
                        {"k": kind, "v": key, "t": value},
                        minid=max(floor_ms, 0),
                        approximate=False,
                    )
            marker = mark(pipe, self._prefix, self._replicas)
            pipe.execute()
            confirm(self._redis, marker, self._replicas)

    def restore(self, entries: Entries, now: int) -> None:
        """Add entries in batches without feeding the stream, then make every replica reload."""
        epoch = secrets.token_hex(16)
        with self._errors("write"):
            for key, values in ((self._jti_key, entries.jtis), (self._sub_key, entries.subs)):
                items = list(values.items())
                for start in range(0, len(items), _BATCH):
                    self._redis.zadd(key, dict(items[start : start + _BATCH]), gt=True)
            pipe = self._redis.pipeline(transaction=True)
            self._purge(pipe, now)
            pipe.set(self._epoch_key, epoch)
            pipe.execute()
        with self._lock:
            self._epoch = epoch

    def close(self) -> None:
        self._redis.close()

    def _purge(self, pipe: Any, now: int) -> None:
        """Remove the members below the oldest live value (expired by rules.Expiry)."""
        for key, lifetime in ((self._jti_key, self._expiry.jti), (self._sub_key, self._expiry.sub)):
            pipe.zremrangebyscore(key, "-inf", f"({lifetime.oldest_live(now)}")

    def _scan(self, key: str, floor: int) -> dict[str, int]:
        """The members whose value is at least `floor` (the oldest live one)."""
        return {
            member: int(score)
            for member, score in self._redis.zscan_iter(key, count=_BATCH)
            if score >= floor
        }

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn redis-py's errors (and a malformed entry) into RevocationStoreError."""
        try:
            yield
        except Unconfirmed as exc:
            raise RevocationUnconfirmed(str(exc)) from exc
        except redis.RedisError as exc:
            raise RevocationStoreError(f"cannot {what} {self.description}: {exc}") from exc
        except (ValueError, KeyError, IndexError) as exc:
            raise RevocationStoreError(
                f"cannot {what} {self.description}: malformed entry ({exc!r})"
            ) from exc


def _stream_id(text: str) -> tuple[int, int]:
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
