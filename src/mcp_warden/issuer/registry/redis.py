"""The client registry in Redis, shared by issuer processes on several hosts.

Keys (prefix `mcp-warden:clients:`):

- `records`, a hash client_id -> the record as JSON (a secret only as its SHA-256);
- `names`, a hash name -> client_id, so names stay unique;
- `assertion:<sha256 of client_id and jti>`, set with `SET NX EXAT exp` when a
  private_key_jwt assertion is used: the first process to set it wins, every
  other use is a replay, and Redis drops the key when the assertion expires.

Changes run as optimistic transactions (WATCH, MULTI/EXEC, again on a
conflict), so two `clients` commands never half-apply. With `replicas`
(MCP_REDIS_WAIT_REPLICAS; 1 for a Sentinel URL) a change returns only once
that many replicas hold it (mcp_warden.redisconn.confirm), so a removed client
or a rotated secret does not come back after a failover; otherwise
RegistryUnconfirmed. Assertion jtis are not confirmed: they are on the token
request's path, and one used within the replication lag before a failover
can be replayed until it expires. The connection comes from
mcp_warden.redisconn (short timeouts, one retry, TLS, Sentinel); a Redis that
does not answer is a RegistryUnavailable naming its address, never its
password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis

from mcp_warden.issuer.clients import Client, ClientsError
from mcp_warden.issuer.registry import RegistryUnavailable, RegistryUnconfirmed, UnknownClient
from mcp_warden.issuer.registry.sqlite import assertion_key
from mcp_warden.redisconn import Unconfirmed, confirm, mark

PREFIX = "mcp-warden:clients:"
T = TypeVar("T")


class RedisRegistry:
    """The `Registry` on one Redis database."""

    def __init__(
        self, client: redis.Redis, where: str, *, prefix: str = PREFIX, replicas: int = 0
    ) -> None:
        """`replicas`: how many replicas must hold a change before it returns (Redis WAIT)."""
        self._redis = client
        self._where = where
        self._prefix = prefix
        self._replicas = replicas
        self._records = prefix + "records"
        self._names = prefix + "names"
        self._assertion = prefix + "assertion:"

    @property
    def description(self) -> str:
        return f"Redis at {self._where}"

    def get(self, client_id: str) -> Client | None:
        with self._errors("read"):
            doc = self._redis.hget(self._records, client_id)
        return None if doc is None else self._parse(doc)

    def all(self) -> list[Client]:
        with self._errors("read"):
            docs = self._redis.hvals(self._records)
        return sorted((self._parse(d) for d in docs), key=lambda c: c.name)

    def add(self, client: Client) -> None:
        def add(pipe: Any) -> None:
            if pipe.hexists(self._names, client.name):
                raise ClientsError(
                    f"a client named {client.name!r} exists; choose another name or "
                    "`mcp-warden clients remove` it first"
                )
            pipe.multi()
            pipe.hset(self._records, client.client_id, client.to_json())
            pipe.hset(self._names, client.name, client.client_id)

        self._atomically(add, self._names)

    def update(self, client_id: str, change: Callable[[Client], Client]) -> Client:
        def update(pipe: Any) -> Client:
            doc = pipe.hget(self._records, client_id)
            if doc is None:
                raise UnknownClient(client_id)
            new = change(self._parse(doc))
            pipe.multi()
            pipe.hset(self._records, client_id, new.to_json())
            return new

        return self._atomically(update, self._records)

    def remove(self, client_id: str) -> Client:
        def remove(pipe: Any) -> Client:
            doc = pipe.hget(self._records, client_id)
            if doc is None:
                raise UnknownClient(client_id)
            old = self._parse(doc)
            pipe.multi()
            pipe.hdel(self._records, client_id)
            pipe.hdel(self._names, old.name)
            return old

        return self._atomically(remove, self._records, self._names)

    def use_assertion(self, client_id: str, jti: str, exp: int, now: int) -> bool:
        key = self._assertion + assertion_key(client_id, jti)
        with self._errors("write"):
            return bool(self._redis.set(key, "1", nx=True, exat=max(exp, now + 1)))

    def close(self) -> None:
        self._redis.close()

    def _atomically(self, change: Callable[[Any], T], *watched: str) -> T:
        """Run `change` on a pipeline WATCHing `watched`, then EXEC; again if they changed."""
        pipe: Any
        with self._errors("write"), self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*watched)
                    result = change(pipe)
                    marker = mark(pipe, self._prefix, self._replicas)
                    pipe.execute()
                except redis.WatchError:
                    continue
                confirm(self._redis, marker, self._replicas)
                return result

    def _parse(self, doc: str | bytes) -> Client:
        if isinstance(doc, bytes):
            doc = doc.decode("utf-8", "replace")
        try:
            return Client.from_json(doc)
        except ValueError as exc:
            raise RegistryUnavailable(
                f"{self.description} holds a damaged client record ({exc}); remove it with "
                "`mcp-warden clients remove` and register the client again"
            ) from None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except Unconfirmed as exc:
            raise RegistryUnconfirmed(
                f"the change reached the client registry at {self.description} but is not "
                f"confirmed: {exc}; a failover before a replica has it would undo it: check "
                "`mcp-warden clients list` once the replicas are back and repeat it if needed"
            ) from exc
        except redis.RedisError as exc:
            raise RegistryUnavailable(
                f"cannot {what} the client registry at {self.description}: {exc}; "
                "check MCP_CLIENTS_URL and that Redis is up"
            ) from exc
