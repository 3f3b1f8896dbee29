"""A real `redis-server` on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_warden.demo.harness import free_port, stop, wait_for_port


@dataclass
class RedisServer:
    """A redis-server process the test controls (it may stop and restart it)."""

    binary: str
    port: int
    workdir: Path
    persistent: bool = False  # appendonly yes in workdir: a restart keeps the data
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 10.0, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def redis_binary() -> str:
    """redis-server's path, or skip (fail in CI, where MCP_WARDEN_REQUIRE_REDIS=1)."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server not installed (apt-get install redis-server; .ci/run does it)"
        if os.environ.get("MCP_WARDEN_REQUIRE_REDIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test."""
    server = RedisServer(redis_binary(), free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
