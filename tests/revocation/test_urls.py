"""MCP_REVOCATION_URL picks the backend; anything else is a ConfigError that says what to use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.redisconn import connect
from mcp_warden.tokens.revocation import (
    Denylist,
    MemoryDenylist,
    SyncedDenylist,
    open_denylist,
    store_location,
)

Open = Callable[..., Denylist]


def test_memory(opened: Open) -> None:
    assert isinstance(opened(Settings(revocation_url="memory://")), MemoryDenylist)


def test_sqlite_relative_and_absolute(
    tmp_path: Path, opened: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert isinstance(opened(Settings(revocation_url="sqlite:///sub/rel.db")), SyncedDenylist)
    assert (tmp_path / "sub" / "rel.db").is_file()
    absolute = tmp_path / "abs.db"
    opened(Settings(revocation_url=f"sqlite:///{absolute}"))
    assert str(absolute).startswith("/")
    assert absolute.is_file()


def test_redis_urls_are_parsed_strictly() -> None:
    client, where = connect("redis://user:p%40ss@redis.internal:6380/3")
    kwargs = client.connection_pool.connection_kwargs
    assert where == "redis.internal:6380"
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.internal", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("user", "p@ss")
    client.close()
    client, where = connect("rediss://[::1]")
    assert where == "[::1]:6379"
    assert client.connection_pool.connection_kwargs["db"] == 0
    client.close()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "memory",
        "memory:///x",
        "postgres://db/revocations",
        "sqlite://",
        "sqlite:///",
        "sqlite://relative.db",
        "sqlite:///:memory:",
        "sqlite:///r.db?mode=ro",
        "redis://",
        "redis:///0",
        "redis://:secret-pw@host:notaport/0",
        "redis://host:70000/0",
        "redis://host:0/0",
        "redis://host/\u00b2",
        "redis://host/0/1",
        "redis://host:6379/zero",
        "redis://host:6379/0?ssl_cert_reqs=none",
        "redis://host:6379/0#frag",
        "http://host:6379/0",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_denylist(Settings(revocation_url=url))
    message = str(caught.value)
    assert "MCP_REVOCATION_URL" in message
    assert "secret-pw" not in message
    assert caught.value.exit_code == 2
    if url.startswith(("redis", "sqlite")):
        assert url.split(":", 1)[0] + "://" in message
    else:
        assert "memory://" in message
        assert "sqlite:///" in message
        assert "redis://host:port/db" in message


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("redis://user:secret-pw@redis.internal:6380/3", "Redis at redis.internal:6380/3"),
        ("rediss://:secret-pw@[::1]", "Redis at [::1]:6379/0 (TLS)"),
        ("memory://", "this process's memory"),
    ],
)
def test_store_location_names_the_store_without_a_password(url: str, location: str) -> None:
    assert store_location(url) == location


def test_store_location_of_a_relative_sqlite_path_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_location("sqlite:///./sub/r.db") == f"SQLite database {tmp_path}/sub/r.db"
