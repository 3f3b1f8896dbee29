"""Every `serve` process (one, or each of `--workers`) settles its heap once it has started:
what start-up built is frozen out of the garbage collector's reach and the youngest
generation is collected after `GC_YOUNG` new objects. A probe on the server's path
reports the collector's state on SIGUSR1."""

from __future__ import annotations

import gc
import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from mcp_warden.server.run import GC_YOUNG, settle_heap
from tests.support.server import deployment
from tests.support.waiting import eventually

PROBE = """\
import gc, json, os, signal

def _report(*_):
    path = os.path.join(os.environ["GC_PROBE_DIR"], f"{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}, out)

signal.signal(signal.SIGUSR1, _report)
"""


def _worker(proc: psutil.Process) -> bool:
    """A spawned worker, not multiprocessing's resource tracker."""
    command = " ".join(proc.cmdline())
    return "spawn_main" in command and "resource_tracker" not in command


def test_settle_heap_freezes_what_exists_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_each_serving_process_has_settled_its_heap(tmp_path: Path, workers: str) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    reports = tmp_path / "reports"
    reports.mkdir()
    path = os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "GC_PROBE_DIR": str(reports)}
    with deployment(tmp_path) as lab, lab.serve("--workers", workers, env=env) as server:
        root = psutil.Process(server.proc.pid)
        serving = [root] if workers == "1" else [p for p in root.children() if _worker(p)]
        assert len(serving) == int(workers)
        for proc in serving:
            os.kill(proc.pid, signal.SIGUSR1)
        done = [reports / f"{proc.pid}.json" for proc in serving]
        eventually(lambda: all(p.exists() and p.stat().st_size for p in done), 10.0, "reports")
        for report in done:
            state = json.loads(report.read_text())
            assert state["frozen"] > 10_000  # start-up's objects, not a handful
            assert state["threshold"][0] == GC_YOUNG
