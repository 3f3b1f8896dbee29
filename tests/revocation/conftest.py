"""Fixtures for the denylist tests: settings per backend, a fake clock, peer processes."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.tokens.revocation import Denylist, open_denylist, sqlite_path
from mcp_warden.tokens.revocation.redis import RedisStore, connect
from mcp_warden.tokens.revocation.sqlite import SqliteStore
from mcp_warden.tokens.revocation.store import Store
from tests.support.procs import REPO, cli_env, stop
from tests.support.redis_server import RedisServer

MAX_TTL = 600
LEEWAY = 5


@dataclass
class FakeClock:
    """Wall-clock time the test moves by hand (starts at the real time)."""

    now: float

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(int(time.time())))


def settings_for(url: str, **changes: float) -> Settings:
    return Settings(revocation_url=url, token_max_ttl=MAX_TTL, token_leeway=LEEWAY).with_overrides(
        **changes
    )


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


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of each shared backend in turn (redis-server started for the test)."""
    return _url(request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of every backend in turn."""
    return _url(request, tmp_path)


def open_store(url: str, *, max_ttl: int = MAX_TTL, leeway: int = LEEWAY) -> Store:
    """The bare store behind a shared URL: no view, no thread."""
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url), max_ttl=max_ttl, leeway=leeway)
    return RedisStore(*connect(url), max_ttl=max_ttl, leeway=leeway)


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


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line the process prints, or fail after `timeout` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"peer printed nothing within {timeout} s")
    return proc.stdout.readline().strip()


@contextlib.contextmanager
def peer(url: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run tests.revocation.peer in a real Python process on the denylist at `url`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.revocation.peer", *args],
        env=cli_env(MCP_REVOCATION_URL=url),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop(proc)  # type: ignore[arg-type]
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
