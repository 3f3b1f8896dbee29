"""The revocation denylist: the only state a stateless verifier consults.

A token is revoked when its `jti` is listed (until the token's own `exp`), or
when its `sub` was revoked at or after the token's `iat` ("every token of this
subject issued so far"; `sub_cutoff` moves that point `leeway` seconds ahead,
as far as verifiers accept an `iat`). Backends are chosen by `MCP_REVOCATION_URL`:

- `memory://`: this process only (tests, a single stdio server), see `memory`;
- `sqlite:///relative/path` or `sqlite:////absolute/path`: every process on one
  host (the default, `sqlite:///./revocations.db`), see `sqlite`;
- `redis://[user@]host[:port][/db]`, `rediss://...` (TLS), or the Sentinel
  forms `redis+sentinel://host:port,host:port/service/db` (mcp_warden.redisconn):
  every replica on every host, see `redis`.

`is_revoked` sits on every request's path, so every backend answers it from
an in-process view (`view`: dict lookups, the one check) that a background
thread keeps in sync with the shared store (`sync`); a revocation made
elsewhere is seen within `MCP_REVOCATION_REFRESH_SECONDS` plus one read.
Entries leave the view and every store by one rule (`rules`), once no token
they concern can still be accepted, so the list holds only the last token
lifetime's revocations. `store` says what a shared store must do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.redisconn import is_redis_url, parse
from mcp_warden.sqlitefile import url_path
from mcp_warden.tokens.revocation.memory import MemoryDenylist
from mcp_warden.tokens.revocation.rules import Clock, sub_cutoff
from mcp_warden.tokens.revocation.store import RevocationStoreError, Store
from mcp_warden.tokens.revocation.sync import SyncedDenylist

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

URL_FORMS = (
    "memory://, sqlite:///relative/path, sqlite:////absolute/path, redis://host:port/db, "
    "redis+sentinel://host:port,host:port/service/db"
)


class Denylist(Protocol):
    """What the verifier and the CLI need from any backend."""

    def revoke_jti(self, jti: str, exp: int) -> None:
        """Refuse the token with this jti until `exp` (its own expiry)."""

    def revoke_sub(self, sub: str, at: int) -> None:
        """Refuse every token of `sub` whose `iat` is at or before `at`."""

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        """True when the token is revoked.

        Raises TokenError("revocation_unavailable") for a token it does not
        know as revoked while it is not `fresh()`.
        """

    def fresh(self) -> bool:
        """True while the backend can vouch for its answers (a shared store was read
        within MCP_REVOCATION_STALE_SECONDS); `/healthz` reports it."""

    def close(self) -> None:
        """Release connections and background work."""


def open_denylist(
    settings: Settings,
    *,
    clock: Clock = time.time,
    monotonic: Clock = time.monotonic,
    follow: bool = True,
) -> Denylist:
    """The backend named by `settings.revocation_url` (ConfigError when it names none).

    `follow=False` is for a process that only revokes (`token revoke`): it skips
    loading the shared list and the sync thread (see SyncedDenylist). The clocks
    are for tests: `clock` dates entries, `monotonic` times freshness.
    """
    url = settings.revocation_url
    max_ttl, leeway = settings.token_max_ttl, settings.token_leeway
    if url == "memory://":
        return MemoryDenylist(max_ttl=max_ttl, leeway=leeway, clock=clock)
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if scheme == "sqlite":
        from mcp_warden.tokens.revocation.sqlite import SqliteStore  # noqa: PLC0415

        store: Store = SqliteStore(sqlite_path(url), max_ttl=max_ttl, leeway=leeway, clock=clock)
    elif is_redis_url(url):
        from mcp_warden.redisconn import open_link  # noqa: PLC0415
        from mcp_warden.tokens.revocation.redis import RedisStore  # noqa: PLC0415

        link = open_link(url, settings, setting="MCP_REVOCATION_URL", name="mcp-warden-revocation")
        store = RedisStore(
            link.client, link.where, max_ttl=max_ttl, leeway=leeway, replicas=link.replicas
        )
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
        monotonic=monotonic,
        follow=follow,
    )


def store_location(url: str) -> str:
    """Where `url` (already accepted by `open_denylist`) keeps revocations, for the operator.

    An SQLite path is made absolute (a relative one depends on the working
    directory); a Redis URL loses its user and password (RedisURL.location).
    """
    if url.startswith("sqlite:"):
        return f"SQLite database {sqlite_path(url).absolute()}"
    if is_redis_url(url):
        return parse(url, "MCP_REVOCATION_URL").location
    return "this process's memory"


def sqlite_path(url: str) -> Path:
    """The file named by `sqlite:///relative` or `sqlite:////absolute` in MCP_REVOCATION_URL."""
    return url_path(url, "MCP_REVOCATION_URL", also="memory:// for one process")
