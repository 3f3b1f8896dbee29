"""`serve` runs on uvloop and httptools when they are installed, and on asyncio and h11
when they are not: the same server answers a tools/call either way. Which ones a
server process runs on is read from the shared objects it has loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mcp_warden.demo.harness import post, tools_call
from tests.support.server import Deployment, Served, deployment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps"),
]

FAST = ("uvloop", "httptools")


def _answers(lab: Deployment, server: Served) -> None:
    response = post(server.url, tools_call("web_search", {"query": "q"}), lab.mint(["web_search"]))
    assert response.status_code == 200
    result = json.loads(response.text)["result"]
    assert result["isError"] is False
    assert len(result["structuredContent"]["results"]) == 5


def _loaded(server: Served) -> set[str]:
    """Which of uvloop and httptools the server process has loaded."""
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    return {name for name in FAST if f"/{name}/" in maps}


def test_serve_runs_on_uvloop_and_httptools_when_installed(tmp_path: Path) -> None:
    with deployment(tmp_path) as lab, lab.serve() as server:
        _answers(lab, server)
        assert _loaded(server) == set(FAST)


def test_without_them_serve_falls_back_to_asyncio_and_h11(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"  # first on the path: importing either fails
    for name in FAST:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    path = os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))
    with deployment(tmp_path) as lab, lab.serve(env={"PYTHONPATH": path}) as server:
        _answers(lab, server)
        assert _loaded(server) == set()
