"""Every Redis URL the project accepts, turned into a redis-py client in one place.

The forms (MCP_REVOCATION_URL, MCP_CLIENTS_URL):

- `redis://[user[:password]@]host[:port][/db]`: one Redis (port 6379, db 0);
- `rediss://...`: the same over TLS;
- `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db]`:
  the primary that the Sentinels at those addresses (port 26379) name for
  `service`, found again after every failover (redis-py's `Sentinel`);
- `rediss+sentinel://...`: TLS to the data nodes and, unless
  `?sentinel_tls=no`, to the Sentinels too. Query options (Sentinel URLs
  only): `sentinel_user=NAME`, the Sentinels' ACL user; `sentinel_tls=yes|no`.

`user` is the data nodes' ACL user. Passwords belong in MCP_REDIS_PASSWORD
and MCP_REDIS_SENTINEL_PASSWORD (or their `_FILE`), not in URLs; a URL
password with MCP_REDIS_PASSWORD set as well is refused, as is a password in
the query. Parsing is strict (nothing unknown is ignored), and an error
names the setting and the accepted forms, never the URL, which may hold a
password. TLS certificates are checked against the system trust store
(SSL_CERT_FILE to add a private CA) and the address Redis or a Sentinel
gives: a data node's certificate must name the address its Sentinels
announce.

Writes that must survive a failover (revocations, client registry changes)
also write a marker key in their MULTI and then `confirm` it: DEL of the
marker and WAIT on one connection, so the reply counts the replicas that hold
this very write (WAIT counts a connection's own writes, and the DEL proves
the write is in the data set this connection reaches).
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError

if TYPE_CHECKING:
    import redis
    from redis.sentinel import Sentinel

SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")
FORMS = (
    "redis://[user@]host[:port][/db], rediss://... (TLS), "
    "redis+sentinel://[user@]host[:port][,host[:port]...]/service[/db]"
    "[?sentinel_user=NAME&sentinel_tls=yes|no] or rediss+sentinel://... (TLS)"
)
"""The accepted forms, for error messages (passwords: MCP_REDIS_PASSWORD, not the URL)."""

REDIS_PORT = 6379
SENTINEL_PORT = 26379
CONNECT_TIMEOUT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 2.0
WAIT_SECONDS = 1.0
"""How long a confirmed write waits for its replicas (below COMMAND_TIMEOUT_SECONDS)."""
MARKER_SECONDS = 60

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_OPTIONS = ("sentinel_user", "sentinel_tls")

Bad = Callable[[str], ConfigError]
"""A parse error for a reason (never a piece of the URL)."""


@dataclass(frozen=True)
class RedisURL:
    """A parsed Redis URL: one data node, or the Sentinels of a service."""

    tls: bool
    nodes: tuple[tuple[str, int], ...]  # the data node, or the Sentinels
    db: int = 0
    service: str | None = None  # Sentinel URLs: the primary's name
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_user: str | None = None
    sentinel_tls: bool = False

    @property
    def sentinel(self) -> bool:
        return self.service is not None

    @property
    def where(self) -> str:
        """The address for messages: host:port, or the service and its Sentinels."""
        if self.sentinel:
            return f"{self.service} via Sentinels {self._addresses}"
        return self._addresses

    @property
    def location(self) -> str:
        """Where the data lives, database included, for an operator (never a password)."""
        tls = " (TLS)" if self.tls else ""
        if self.sentinel:
            return f"Redis service {self.service}/{self.db} via Sentinels {self._addresses}{tls}"
        return f"Redis at {self._addresses}/{self.db}{tls}"

    @property
    def _addresses(self) -> str:
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)


def is_redis_url(url: str) -> bool:
    """True when `url`'s scheme is one of ours (it may still be malformed: see `parse`)."""
    return url.partition("://")[0] in SCHEMES and "://" in url


def parse(url: str, setting: str) -> RedisURL:
    """The parts of `url`; ConfigError naming `setting` and what is wrong, never the URL."""

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"{setting} is not a Redis URL we accept ({reason}); use {FORMS}")

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise bad("unknown scheme")
    sentinel = scheme.endswith("+sentinel")
    tls = scheme.startswith("rediss")
    if "#" in rest:
        raise bad("a fragment")
    rest, question, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon and password_text else None
    default_port = SENTINEL_PORT if sentinel else REDIS_PORT
    nodes = tuple(_address(text, default_port, bad) for text in hosts.split(","))
    if not sentinel and len(nodes) != 1:
        raise bad("several hosts; name Sentinels with redis+sentinel://")
    service, _, db_text = path.partition("/") if sentinel else (None, "", path)
    if sentinel and not (service and _NAME.fullmatch(service)):
        raise bad("no service name after the Sentinels' addresses")
    if db_text and not (db_text.isascii() and db_text.isdigit()):
        raise bad("the database is not a number")
    options = _options(query, bad) if question else {}
    if options and not sentinel:
        raise bad("a query; only Sentinel URLs take options")
    sentinel_tls = options.get("sentinel_tls", "yes" if tls else "no")
    if sentinel_tls not in ("yes", "no"):
        raise bad("sentinel_tls is neither yes nor no")
    return RedisURL(
        tls=tls,
        nodes=nodes,
        db=int(db_text or 0),
        service=service,
        username=username,
        password=password,
        sentinel_user=options.get("sentinel_user"),
        sentinel_tls=sentinel_tls == "yes",
    )


def _address(text: str, default_port: int, bad: Bad) -> tuple[str, int]:
    """("host", port) from `host`, `host:port`, `[v6]` or `[v6]:port`."""
    if text.startswith("["):
        host, close, after = text[1:].partition("]")
        if not close or not _IPV6.fullmatch(host) or (after and not after.startswith(":")):
            raise bad("a malformed IPv6 address")
        colon, port_text = after[:1], after[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not _NAME.fullmatch(host):
            raise bad("a missing or malformed host")
    if not colon:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise bad("a port that is not a number from 1 to 65535")
    return host, int(port_text)


def _options(query: str, bad: Bad) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if key not in _OPTIONS:
            raise bad(f"an option other than {' and '.join(_OPTIONS)}")
        if key in options or not equals or not value:
            raise bad(f"{key} given twice or empty")
        options[key] = unquote(value)
    return options


@functools.cache
def _sentinel_classes() -> tuple[type[Sentinel], type[redis.Redis]]:
    """redis-py's Sentinel and client, with two changes; made on first use, as importing
    redis is a large part of a CLI command's start-up time and most need none of it.

    - `discover_master` says in one short line why no Sentinel named a primary
      (each Sentinel's own error: a refused password, an untrusted certificate,
      a refused connection, the service unknown or down); redis-py's names each
      Sentinel by its client's repr, kilobytes that drop that cause.
    - the client's close() also closes the connections to the Sentinels.
    """
    import redis  # noqa: PLC0415
    from redis.sentinel import (  # noqa: PLC0415
        MasterNotFoundError,
        Sentinel,
        SentinelConnectionPool,
    )

    class Sentinels(Sentinel):
        def discover_master(self, service_name: str) -> tuple[str, int]:
            why = []
            for index, sentinel in enumerate(self.sentinels):
                kwargs = sentinel.connection_pool.connection_kwargs
                address = f"{kwargs['host']}:{kwargs['port']}"
                try:
                    masters = sentinel.sentinel_masters()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    why.append(f"{address}: {exc}")
                    continue
                state = masters.get(service_name) if isinstance(masters, dict) else None
                if state is None:
                    why.append(f"{address}: does not monitor it")
                elif not self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                    why.append(f"{address}: reports it down")
                else:
                    # Ask the one that answered first next time, as redis-py does.
                    self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                    return str(state["ip"]), int(state["port"])
            raise MasterNotFoundError(
                f"no Sentinel names a primary for {service_name!r} ({'; '.join(why)})"
            )

    class SentinelRedis(redis.Redis):
        def close(self) -> None:
            try:
                super().close()
            finally:
                cast(SentinelConnectionPool, self.connection_pool).sentinel_manager.close()

    return Sentinels, SentinelRedis


def connect(
    url: str,
    *,
    setting: str = "MCP_REVOCATION_URL",
    name: str = "mcp-warden-revocation",
    password: str | None = None,
    sentinel_password: str | None = None,
) -> tuple[redis.Redis, str]:
    """A client for `url` (any form above) and its address for messages ("host:port").

    `password` (MCP_REDIS_PASSWORD) authenticates to the data nodes when the URL
    holds none: as the URL's user for an ACL user, as `default` otherwise;
    `sentinel_password` (MCP_REDIS_SENTINEL_PASSWORD) to the Sentinels, as
    `sentinel_user`. A URL password with `password` as well is refused: which
    one counts would be a guess.

    Short timeouts and a single retry without backoff: a dead Redis costs a
    sync or a revocation about a second, never a stuck thread. After a
    failover, a Sentinel client asks the Sentinels for the new primary on its
    next connection. `setting` is the variable an error names, `name` the
    client name Redis shows (CLIENT LIST).
    """
    import redis  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    target = parse(url, setting)
    if password is not None and target.password:
        raise ConfigError(
            f"{setting} holds a password and MCP_REDIS_PASSWORD (or MCP_REDIS_PASSWORD_FILE) "
            f"is set too; remove the password from {setting}"
        )
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 1),
        "client_name": name,
    }
    data: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password or password,
        "ssl": target.tls,
        "decode_responses": True,
        **timeouts,
    }
    if not target.sentinel:
        ((host, port),) = target.nodes
        return redis.Redis(host=host, port=port, **data), target.where
    sentinel_class, client_class = _sentinel_classes()
    sentinels = sentinel_class(
        list(target.nodes),
        sentinel_kwargs={
            "username": target.sentinel_user,
            "password": sentinel_password,
            "ssl": target.sentinel_tls,
            **timeouts,
        },
    )
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        str(target.service), redis_class=client_class, **data
    )
    return client, target.where


@dataclass(frozen=True)
class RedisLink:
    """An opened client, its address for messages, and the replicas its confirmed writes need."""

    client: redis.Redis
    where: str
    replicas: int


def open_link(url: str, settings: Settings, *, setting: str, name: str) -> RedisLink:
    """`connect` with the passwords of `settings`, and the replicas to WAIT for.

    MCP_REDIS_WAIT_REPLICAS when set; otherwise 1 for a Sentinel URL (failover
    is its point, and only a write a replica holds survives one) and 0 for one
    Redis.
    """
    client, where = connect(
        url,
        setting=setting,
        name=name,
        password=settings.redis_password,
        sentinel_password=settings.redis_sentinel_password,
    )
    replicas = settings.redis_wait_replicas
    if replicas is None:
        replicas = 1 if parse(url, setting).sentinel else 0
    return RedisLink(client, where, replicas)


class Unconfirmed(Exception):
    """A write reached the primary, but not the replicas it had to reach (the message says)."""


def mark(pipe: Any, prefix: str, replicas: int) -> str | None:
    """Add a marker key to the MULTI in `pipe` when `replicas` must confirm it; its name."""
    if replicas <= 0:
        return None
    marker = f"{prefix}confirm:{secrets.token_hex(16)}"
    pipe.set(marker, "1", ex=MARKER_SECONDS)
    return marker


def confirm(client: redis.Redis, marker: str | None, replicas: int) -> None:
    """Wait until `replicas` replicas hold the write that set `marker`; Unconfirmed if not.

    One pipeline, so one connection: DEL finds the marker (the write is in the
    data set of the primary this connection reaches, even after a failover)
    and is a write of this connection, which WAIT then waits for.
    """
    if marker is None:
        return
    pipe = client.pipeline(transaction=False)
    pipe.delete(marker)
    pipe.wait(replicas, int(WAIT_SECONDS * 1000))
    found, acked = pipe.execute()
    if not found:
        raise Unconfirmed("the write is not on the current primary (lost in a failover?)")
    if acked < replicas:
        raise Unconfirmed(
            f"{acked} of the {replicas} replica(s) MCP_REDIS_WAIT_REPLICAS asks for "
            f"confirmed it within {WAIT_SECONDS:g} s"
        )
