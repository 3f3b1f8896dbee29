"""Fixtures for the denylist tests: a fake clock, each backend's URL, store pairs.

Their helpers (settings, bare stores, the peer process) are in tests/support/revocation.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.tokens.revocation import Denylist, open_denylist
from mcp_warden.tokens.revocation.store import Store
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer
from tests.support.revocation import open_store

REDIS = pytest.param("redis", marks=pytest.mark.slow, id="redis")
"""The Redis backend starts a redis-server for each test: slow."""


@pytest.fixture
def clock() -> FakeClock:
    """Wall-clock time the test moves by hand (starts at the real time)."""
    return FakeClock(float(int(time.time())))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'revocations.db'}"


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'revocations.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(params=["sqlite", REDIS])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of each shared backend in turn (redis-server started for the test)."""
    return _url(request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", REDIS])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of every backend in turn."""
    return _url(request, tmp_path)


@pytest.fixture
def store_pair(shared_url: str) -> Iterator[tuple[Store, Store]]:
    """A writer and a reader store on each shared backend (each its own connection)."""
    writer, reader = open_store(shared_url), open_store(shared_url)
    yield writer, reader
    writer.close()
    reader.close()


@pytest.fixture
def opened() -> Iterator[Callable[..., Denylist]]:
    """open_denylist that closes every denylist it opened when the test ends."""
    denylists: list[Denylist] = []

    def open_(settings: Settings, **kwargs: object) -> Denylist:
        denylist = open_denylist(settings, **kwargs)  # type: ignore[arg-type]
        denylists.append(denylist)
        return denylist

    yield open_
    for denylist in denylists:
        denylist.close()
