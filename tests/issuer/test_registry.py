"""The client registry on each store (SQLite file, real redis-server): the same behaviour.

Two registry objects on one store stand for two issuer processes.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.issuer.clients import Client, ClientsError, hash_secret, new_client_id
from mcp_warden.issuer.registry import Registry, UnknownClient, open_registry
from mcp_warden.issuer.registry.sqlite import SqliteRegistry

NOW = 1_800_000_000


def client(name: str, tools: tuple[str, ...] = ("web_search",)) -> Client:
    return Client(new_client_id(), name, tools, 600, NOW, secret_hash=hash_secret(name))


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return str(server.url)
    return f"sqlite:///{tmp_path / 'clients.db'}"


@pytest.fixture
def pair(url: str) -> Iterator[tuple[Registry, Registry]]:
    settings = Settings(clients_url=url)
    one, two = open_registry(settings), open_registry(settings)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def test_what_one_process_writes_the_other_reads_at_once(pair: tuple[Registry, Registry]) -> None:
    one, two = pair
    alice = client("alice")
    one.add(alice)
    assert two.get(alice.client_id) == alice
    changed = two.update(alice.client_id, lambda c: replace(c, tools=("usage",)))
    assert one.get(alice.client_id) == changed
    assert [c.name for c in one.all()] == ["alice"]
    assert two.remove(alice.client_id) == changed
    assert one.get(alice.client_id) is None
    with pytest.raises(UnknownClient, match="clients list"):
        one.remove(alice.client_id)
    with pytest.raises(UnknownClient):
        one.update(alice.client_id, lambda c: c)


def test_names_are_unique(pair: tuple[Registry, Registry]) -> None:
    one, two = pair
    one.add(client("svc"))
    with pytest.raises(ClientsError, match="exists"):
        two.add(client("svc"))
    assert len(one.all()) == 1
    first = one.all()[0]
    one.remove(first.client_id)
    two.add(client("svc"))  # the name is free again


def test_an_assertion_is_used_once_across_processes(pair: tuple[Registry, Registry]) -> None:
    one, two = pair
    assert one.use_assertion("c1", "jti-1", NOW + 60, NOW)
    assert not two.use_assertion("c1", "jti-1", NOW + 60, NOW)
    assert not one.use_assertion("c1", "jti-1", NOW + 60, NOW + 1)
    assert two.use_assertion("c2", "jti-1", NOW + 60, NOW)  # per client
    assert one.use_assertion("c1:jti", "1", NOW + 60, NOW)  # no separator ambiguity
    assert one.use_assertion("c1", ":jti-1", NOW + 60, NOW)


def test_concurrent_updates_lose_nothing(pair: tuple[Registry, Registry]) -> None:
    one, two = pair
    base = client("race", ("t0",))
    one.add(base)

    def add_tools(registry: Registry, prefix: str) -> None:
        for i in range(20):

            def more(c: Client, name: str = f"{prefix}{i}") -> Client:
                return replace(c, tools=(*c.tools, name))

            registry.update(base.client_id, more)

    threads = [
        threading.Thread(target=add_tools, args=(one, "a")),
        threading.Thread(target=add_tools, args=(two, "b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = one.get(base.client_id)
    assert found is not None
    assert len(found.tools) == 41


def test_sqlite_file_is_private_and_expired_assertions_go(tmp_path: Path) -> None:
    path = tmp_path / "clients.db"
    registry = SqliteRegistry(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        registry.use_assertion("c", "old", NOW + 10, NOW)
        registry.use_assertion("c", "new", NOW + 100, NOW + 20)  # purges the expired one
        assert registry.use_assertion("c", "old", NOW + 200, NOW + 20)
        assert not registry.use_assertion("c", "new", NOW + 100, NOW + 20)
    finally:
        registry.close()


def test_sqlite_refuses_links(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    real.touch()
    link = tmp_path / "clients.db"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        SqliteRegistry(link)
    wal = tmp_path / "other.db-wal"
    wal.symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        SqliteRegistry(tmp_path / "other.db")


def test_a_replaced_sqlite_file_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "clients.db"
    registry = SqliteRegistry(path)
    try:
        alice = client("alice")
        registry.add(alice)
        path.rename(tmp_path / "aside.db")
        assert registry.get(alice.client_id) is None  # a new, empty file at the path
        assert path.exists()
    finally:
        registry.close()


def test_unknown_urls_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="MCP_CLIENTS_URL") as caught:
        open_registry(Settings(clients_url="postgres://user:hunter2@db/x"))
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="MCP_CLIENTS_URL") as caught:
        open_registry(Settings(clients_url="redis://user:hunter2@host/x?y=1"))
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="MCP_CLIENTS_URL"):
        open_registry(Settings(clients_url="sqlite:///:memory:"))
