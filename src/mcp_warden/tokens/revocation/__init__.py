"""The revocation denylist: the only state a stateless verifier consults.

A token is revoked when its `jti` is listed (until the token's own `exp`), or
when its `sub` was revoked at or after the token's `iat` ("every token of this
subject issued so far"; `sub_cutoff` moves that point `leeway` seconds ahead,
as far as verifiers accept an `iat`). Backends are chosen by `MCP_REVOCATION_URL`:

- `memory://`: this process only (tests, a single stdio server);
- `sqlite:///relative/path` or `sqlite:////absolute/path`: every process on one
  host (the default, `sqlite:///./revocations.db`), see `revocation_sqlite`;
- `redis://[user:password@]host[:port][/db]` or `rediss://...` (TLS): every
  replica on every host, see `revocation_redis`.

`is_revoked` sits on every request's path, so every backend answers it from
an in-process view (dict lookups) that a background thread keeps in sync with
the shared store (`revocation_sync`); a revocation made elsewhere is seen
within `MCP_REVOCATION_REFRESH_SECONDS` (0.5 s) plus one read. Entries leave
every backend once no token they concern can still be accepted, so the list
holds only the last token lifetime's revocations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.tokens.revocation.sync import (
    Clock,
    Entries,
    RevocationStoreError,
    RevocationView,
    Store,
    SyncedDenylist,
    check_entry,
)

__all__ = [
    "Clock",
    "Denylist",
    "MemoryDenylist",
    "RevocationStoreError",
    "SyncedDenylist",
    "open_denylist",
    "store_location",
    "sub_cutoff",
]

URL_FORMS = "memory://, sqlite:///relative/path, sqlite:////absolute/path, redis://host:port/db"


class Denylist(Protocol):
    """What the verifier and the CLI need from any backend."""

    def revoke_jti(self, jti: str, exp: int) -> None:
        """Refuse the token with this jti until `exp` (its own expiry)."""

    def revoke_sub(self, sub: str, at: int) -> None:
        """Refuse every token of `sub` whose `iat` is at or before `at`."""

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        """True when the token is revoked.

        Raises TokenError("revocation_unavailable") when the backend cannot
        vouch for its answer (a shared store unreachable for too long).
        """

    def close(self) -> None:
        """Release connections and background work."""


class MemoryDenylist:
    """One process only: for tests and single-process stdio servers."""

    def __init__(
        self, *, max_ttl: int = 86_400, leeway: int = 30, clock: Clock = time.time
    ) -> None:
        self._view = RevocationView(max_ttl=max_ttl, leeway=leeway)
        self._clock = clock

    def revoke_jti(self, jti: str, exp: int) -> None:
        check_entry(jti, exp, "jti")
        self._add(Entries(jtis={jti: exp}))

    def revoke_sub(self, sub: str, at: int) -> None:
        check_entry(sub, at, "sub")
        self._add(Entries(subs={sub: at}))

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        return self._view.contains(jti, sub, iat)

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._view)

    def _add(self, entries: Entries) -> None:
        self._view.merge(entries)
        self._view.purge(int(self._clock()))


def open_denylist(settings: Settings, *, clock: Clock = time.time, follow: bool = True) -> Denylist:
    """The backend named by `settings.revocation_url` (ConfigError when it names none).

    `follow=False` is for a process that only revokes (`token revoke`): it skips
    loading the shared list and the sync thread (see SyncedDenylist).
    """
    url = settings.revocation_url
    max_ttl, leeway = settings.token_max_ttl, settings.token_leeway
    if url == "memory://":
        return MemoryDenylist(max_ttl=max_ttl, leeway=leeway, clock=clock)
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if scheme == "sqlite":
        from mcp_warden.tokens.revocation.sqlite import SqliteStore  # noqa: PLC0415

        store: Store = SqliteStore(sqlite_path(url), max_ttl=max_ttl, leeway=leeway, clock=clock)
    elif scheme in ("redis", "rediss"):
        from mcp_warden.tokens.revocation.redis import RedisStore, connect  # noqa: PLC0415

        client, where = connect(url)
        store = RedisStore(client, where, max_ttl=max_ttl, leeway=leeway)
    else:
        # Never echo the URL: it may carry a Redis password.
        raise ConfigError(f"MCP_REVOCATION_URL scheme {scheme!r} is not supported; use {URL_FORMS}")
    return SyncedDenylist(
        store,
        max_ttl=max_ttl,
        leeway=leeway,
        refresh=settings.revocation_refresh_seconds,
        stale=settings.revocation_stale_seconds,
        clock=clock,
        follow=follow,
    )


def sub_cutoff(now: float, leeway: int) -> int:
    """The `at` of "revoke every token of this subject issued so far", revoked at `now`.

    Verifiers accept an `iat` up to `leeway` seconds ahead of their clock, so a
    token minted just before the revocation by a host whose clock runs ahead
    may carry an `iat` up to `now + leeway`: the cutoff covers it. The price:
    tokens of the subject minted within `leeway` seconds after the revocation
    are refused too. The entry lives until `at + max_ttl + leeway`, past the
    `exp` (at most `iat + max_ttl`) of every token it refuses.
    """
    return int(now) + leeway


def store_location(url: str) -> str:
    """Where `url` (already accepted by `open_denylist`) keeps revocations, for the operator.

    An SQLite path is made absolute (a relative one depends on the working
    directory); a Redis URL loses its user and password.
    """
    if url.startswith("sqlite:"):
        return f"SQLite database {sqlite_path(url).absolute()}"
    if url.startswith(("redis:", "rediss:")):
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        db = parts.path.lstrip("/") or "0"
        tls = " (TLS)" if parts.scheme == "rediss" else ""
        return f"Redis at {host}:{parts.port or 6379}/{db}{tls}"
    return "this process's memory"


def sqlite_path(url: str) -> Path:
    """The file named by `sqlite:///relative` or `sqlite:////absolute`."""
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:" or any(c in path for c in "?#"):
        raise ConfigError(
            "MCP_REVOCATION_URL is not an SQLite URL we accept; use sqlite:///relative/path "
            "or sqlite:////absolute/path (memory:// for one process)"
        )
    return Path(path)
