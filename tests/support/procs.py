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


def required(found: str | None, reason: str, variable: str) -> str:
    """`found` (a path), or skip the test for `reason`: fail it where CI sets `variable`=1."""
    if found is None:
        if os.environ.get(variable) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def node_bin() -> str:
    """The `node` executable, or skip (fail in CI, where MCP_WARDEN_REQUIRE_NODE=1)."""
    node = shutil.which("node") if (NODE_DIR / "node_modules").is_dir() else None
    reason = "node or node/node_modules missing: run `make install` (npm ci in node/)"
    return required(node, reason, "MCP_WARDEN_REQUIRE_NODE")


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
