"""Helpers for the denylist tests: settings per backend, bare stores, a peer process.

The fixtures that use them (a fake clock, each backend's URL, store pairs)
are in tests/revocation/conftest.py.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mcp_warden.config import Settings
from mcp_warden.demo.harness import cli_env, stop
from mcp_warden.tokens.revocation import sqlite_path
from mcp_warden.tokens.revocation.redis import RedisStore, connect
from mcp_warden.tokens.revocation.sqlite import SqliteStore
from mcp_warden.tokens.revocation.store import Store
from tests.support.procs import REPO

MAX_TTL = 600
LEEWAY = 5


def settings_for(url: str, **changes: float) -> Settings:
    return Settings(revocation_url=url, token_max_ttl=MAX_TTL, token_leeway=LEEWAY).with_overrides(
        **changes
    )


def open_store(url: str, *, max_ttl: int = MAX_TTL, leeway: int = LEEWAY) -> Store:
    """The bare store behind a shared URL: no view, no thread."""
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url), max_ttl=max_ttl, leeway=leeway)
    return RedisStore(*connect(url), max_ttl=max_ttl, leeway=leeway)


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
