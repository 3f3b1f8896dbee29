"""Real processes for tests, beyond `mcp_warden.demo.harness`: Node, the repo's paths.

The process helpers the demo needs too (free ports, background processes,
ready lines, `mcp-warden` runs) live in `mcp_warden.demo.harness`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from mcp_warden.demo.harness import run_process

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "node"
VECTORS = REPO / "tests" / "vectors"


def required_binary(name: str, variable: str, install: str) -> str:
    """`name`'s path, or skip the test (fail where `variable` is 1, as .ci/run sets it)."""
    binary = shutil.which(name)
    if binary is None:
        reason = f"{name} not installed ({install}; .ci/run does it)"
        if os.environ.get(variable) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


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
    argv = [node_bin(), str(NODE_DIR / script), *args]
    return run_process(argv, env, input=input, cwd=NODE_DIR, timeout=timeout)


def vectors_dir() -> Path:
    """The published test vectors (values only) kept in the repo: tests/vectors, see SOURCE.md."""
    return VECTORS
