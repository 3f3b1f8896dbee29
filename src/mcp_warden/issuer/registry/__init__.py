"""The client registry: every issuer process reads and writes the same one.

`MCP_CLIENTS_URL` names it:

- `sqlite:///relative/path` or `sqlite:////absolute/path`: issuer processes on
  one host (the default, `sqlite:///./clients.db`), see `sqlite`;
- `redis://[user@]host[:port][/db]`, `rediss://...` (TLS), or the Sentinel
  forms `redis+sentinel://host:port,host:port/service/db` (mcp_warden.redisconn):
  issuer processes on several hosts, see `redis`.

Nothing is cached: every token request reads its client from the store (a
primary-key lookup, or one Redis HGET), so `clients set`, `rotate-secret`
and `remove` take effect on every issuer process with the next request,
well within a second. The store also keeps the replay cache of
`private_key_jwt` assertions (each (client, jti) once until the assertion
expires), so an assertion used at one issuer process is refused at all; the
token endpoint's DPoP proofs share it (each (key thumbprint, jti) once, under
a `dpop:` namespace no client_id can take, until the proof's iat leaves the
window).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError, WardenError
from mcp_warden.issuer.clients import Client, ClientsError
from mcp_warden.redisconn import is_redis_url, open_link
from mcp_warden.sqlitefile import url_path

URL_FORMS = (
    "sqlite:///relative/path, sqlite:////absolute/path, redis://host:port/db, "
    "redis+sentinel://host:port,host:port/service/db"
)


class RegistryUnavailable(WardenError):
    """The registry's store cannot be read or written now (the message names it, no password)."""


class RegistryUnconfirmed(RegistryUnavailable):
    """A change reached the store, but not the replicas that make it survive a failover."""


class UnknownClient(ClientsError):
    """No client has this client_id."""

    def __init__(self, client_id: str) -> None:
        super().__init__(
            f"no client {client_id[:64]!r} in the registry; see `mcp-warden clients list`"
        )


class Registry(Protocol):
    """What the issuer and the `clients` command need from a store."""

    @property
    def description(self) -> str:
        """Where the registry lives, for messages (never a password)."""

    def get(self, client_id: str) -> Client | None:
        """The client, or None (unknown or removed)."""

    def all(self) -> list[Client]:
        """Every client, by name."""

    def add(self, client: Client) -> None:
        """Store a new client; ClientsError when its name is taken."""

    def update(self, client_id: str, change: Callable[[Client], Client]) -> Client:
        """Replace the client by `change(current)` atomically; UnknownClient when absent."""

    def remove(self, client_id: str) -> Client:
        """Delete the client; UnknownClient when absent."""

    def use_assertion(self, client_id: str, jti: str, exp: int, now: int) -> bool:
        """Record an assertion's jti until `exp`; False when it was already used (a replay)."""

    def close(self) -> None:
        """Release connections."""


def open_registry(settings: Settings) -> Registry:
    """The store named by MCP_CLIENTS_URL (ConfigError when it names none)."""
    url = settings.clients_url
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if scheme == "sqlite":
        from mcp_warden.issuer.registry.sqlite import SqliteRegistry  # noqa: PLC0415

        return SqliteRegistry(sqlite_path(url))
    if is_redis_url(url):
        from mcp_warden.issuer.registry.redis import RedisRegistry  # noqa: PLC0415

        link = open_link(url, settings, setting="MCP_CLIENTS_URL", name="mcp-warden-clients")
        return RedisRegistry(link.client, link.where, replicas=link.replicas)
    # Never echo the URL: it may carry a Redis password.
    raise ConfigError(f"MCP_CLIENTS_URL scheme {scheme!r} is not supported; use {URL_FORMS}")


def sqlite_path(url: str) -> Path:
    """The file named by `sqlite:///relative` or `sqlite:////absolute` in MCP_CLIENTS_URL."""
    return url_path(url, "MCP_CLIENTS_URL")
