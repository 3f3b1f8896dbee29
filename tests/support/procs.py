"""Real processes for tests: the CLI, background servers, free ports.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "node"
VECTORS = REPO / "tests" / "vectors"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts on 127.0.0.1:port, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def cli_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: no MCP_/SCAVIO_ settings leak in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "SCAVIO_"))}
    env.update(base or {})
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    input: str | bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `mcp-warden ARGS` as a real process; never raises on a non-zero exit."""
    data = input.decode() if isinstance(input, bytes) else input
    return subprocess.run(
        [sys.executable, "-m", "mcp_warden", *args],
        env=dict(env),
        input=data if data is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def node_bin() -> str:
    """The `node` executable, or skip (fail in CI, where MCP_WARDEN_REQUIRE_NODE=1)."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules").is_dir():
        reason = "node or node/node_modules missing: run `make install` (npm ci in node/)"
        if os.environ.get("MCP_WARDEN_REQUIRE_NODE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return node


def run_node(
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run node/<script> with real Node; never raises on a non-zero exit."""
    return subprocess.run(
        [node_bin(), str(NODE_DIR / script), *args],
        env=dict(env) if env is not None else None,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=NODE_DIR,
        check=False,
    )


def vectors_dir() -> Path:
    """The published test vectors (values only) kept in the repo: tests/vectors, see SOURCE.md."""
    return VECTORS


@contextlib.contextmanager
def background(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a real process, wait for its port, and always stop it afterwards."""
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if port is not None:
            wait_for_port(port, timeout, proc)
        yield proc
    finally:
        stop(proc)
        if log is not None:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)
