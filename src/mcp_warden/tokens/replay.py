"""The DPoP replay cache: each proof (thumbprint, jti) is accepted once, on any replica.

A proof stays acceptable while its `iat` is inside the window (RFC 9449
section 11.1), so an entry is kept until `iat + max_age` and then may go.
The store is the one `MCP_REVOCATION_URL` names, as for revocations:

- a Redis URL (`redis://`, `rediss://`, or Sentinel: mcp_warden.redisconn):
  `SET key 1 NX EX ttl`, one round trip, atomic across every replica on every
  host. Not confirmed by replicas (WAIT would put a replica round trip on
  every request): a proof first used within the replication lag before a
  failover can be used once more until its iat leaves the window;
- `sqlite:///path`: a `dpop_replay` table in `path.dpop`, a database file
  beside the revocation database, one INSERT that only succeeds for an unseen
  (or expired) key, every process on one host. Not in the revocation file
  itself: opening that file a second time in a server process (the checks
  before SQLite opens it use a descriptor of their own) would drop the POSIX
  locks the revocation store's connection holds, and another process could
  then checkpoint and delete the live WAL under it;
- `memory://`: a bounded dict, this process only.

Keys are SHA-256 of (jkt, jti), so a hostile jti costs 32 bytes. Failing
closed: a store that cannot answer, or a memory cache full of unexpired
entries, refuses the proof (`replay_unavailable`), as revocation does.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
import time
from typing import Protocol

import redis

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.redisconn import is_redis_url, open_link
from mcp_warden.sqlitefile import SqliteFile
from mcp_warden.tokens.dpop import DpopError
from mcp_warden.tokens.revocation import sqlite_path
from mcp_warden.tokens.revocation.rules import Clock
from mcp_warden.tokens.revocation.store import RevocationStoreError

PREFIX = "mcp-warden:dpop:"
MEMORY_LIMIT = 100_000
_PURGE_EVERY = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dpop_replay (
    key BLOB PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""


def replay_key(jkt: str, jti: str) -> bytes:
    """The 32 bytes that name one proof."""
    return hashlib.sha256(f"{len(jkt)}:{jkt}{jti}".encode()).digest()


class ReplayCache(Protocol):
    """What `serve` needs: accept each (jkt, jti) once until `until`."""

    def first_use(self, jkt: str, jti: str, until: float) -> bool:
        """True when the proof is new (now recorded until `until`), False when seen.

        Raises DpopError("replay_unavailable") when the store cannot answer.
        """

    def close(self) -> None:
        """Release connections."""


class MemoryReplayCache:
    """One process: a dict key -> expiry, at most `limit` unexpired entries."""

    def __init__(self, *, limit: int = MEMORY_LIMIT, clock: Clock = time.time) -> None:
        self._seen: dict[bytes, float] = {}
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()

    def first_use(self, jkt: str, jti: str, until: float) -> bool:
        key = replay_key(jkt, jti)
        now = self._clock()
        with self._lock:
            expiry = self._seen.get(key)
            if expiry is not None and expiry >= now:
                return False
            if len(self._seen) >= self._limit:
                self._seen = {k: v for k, v in self._seen.items() if v >= now}
                if len(self._seen) >= self._limit:
                    raise DpopError("replay_unavailable")
            self._seen[key] = until
            return True

    def close(self) -> None:
        self._seen.clear()


class SqliteReplayCache:
    """Every process on one host: a table in `<revocation database>.dpop` (WAL, busy timeout)."""

    def __init__(self, url: str, *, clock: Clock = time.time) -> None:
        revocations = sqlite_path(url)
        self._file = SqliteFile(
            revocations.with_name(revocations.name + ".dpop"),
            name="the DPoP replay cache",
            setting="MCP_REVOCATION_URL",
            error=RevocationStoreError,
            schema=_SCHEMA,
            # an entry survives a process crash, not a power loss, and a request costs no
            # fsync (a proof lives a minute; revocations stay FULL)
            synchronous="NORMAL",
        )
        self._db, _ = self._file.open()
        self._clock = clock
        self._lock = threading.Lock()
        self._writes = 0

    def first_use(self, jkt: str, jti: str, until: float) -> bool:
        key = replay_key(jkt, jti)
        now = self._clock()
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO dpop_replay (key, expires_at) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                    "WHERE dpop_replay.expires_at < ?",
                    (key, until, now),
                )
                new = cursor.rowcount == 1
                self._writes += 1
                if self._writes % _PURGE_EVERY == 0:
                    self._db.execute("DELETE FROM dpop_replay WHERE expires_at < ?", (now,))
            except sqlite3.Error:
                raise DpopError("replay_unavailable") from None
        return new

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisReplayCache:
    """Every replica on every host: SET NX EX on one Redis."""

    def __init__(self, client: redis.Redis, *, clock: Clock = time.time) -> None:
        self._client = client
        self._clock = clock

    def first_use(self, jkt: str, jti: str, until: float) -> bool:
        ttl = max(1, math.ceil(until - self._clock()))
        name = PREFIX + replay_key(jkt, jti).hex()
        try:
            return bool(self._client.set(name, b"1", nx=True, ex=ttl))
        except redis.RedisError:
            raise DpopError("replay_unavailable") from None

    def close(self) -> None:
        self._client.close()


def open_replay_cache(settings: Settings, *, clock: Clock = time.time) -> ReplayCache:
    """The replay cache in the store MCP_REVOCATION_URL names."""
    url = settings.revocation_url
    if url == "memory://":
        return MemoryReplayCache(clock=clock)
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        return SqliteReplayCache(url, clock=clock)
    if is_redis_url(url):
        link = open_link(url, settings, setting="MCP_REVOCATION_URL", name="mcp-warden-dpop-replay")
        return RedisReplayCache(link.client, clock=clock)
    raise ConfigError(f"MCP_REVOCATION_URL scheme {scheme!r} is not supported")
