"""Metrics for `serve --workers N`: two real `serve` processes write into one multiprocess
directory, and one scrape of the supervisor's endpoint adds them up.

The test process plays the supervisor with the functions it calls
(`endpoint.parent_endpoint`, `ParentMetrics.worker_exited`); the two workers are
`mcp-warden serve` processes started with the PROMETHEUS_MULTIPROC_DIR it set,
as spawned workers inherit it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.demo.harness import background, free_port, post, stop, tools_call, wait_for_line
from mcp_warden.metrics.endpoint import MULTIPROC_DIR, parent_endpoint
from tests.support.prometheus import check_metrics, scrape
from tests.support.server import BANNER, deployment

pytestmark = pytest.mark.slow

SEARCH = {"query": "two workers"}
CALLS = "mcp_warden_tool_calls_total"
SYNCED = "mcp_warden_revocation_synced_timestamp_seconds"


@contextlib.contextmanager
def worker(port: int, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`mcp-warden serve --port PORT` as a worker runs it (stopped at the end if still running)."""
    argv = [sys.executable, "-m", "mcp_warden", "serve", "--port", str(port)]
    with background(argv, env=env, log=log) as proc:
        wait_for_line(log, proc, BANNER)
        yield proc


def test_one_scrape_adds_up_two_worker_processes(tmp_path: Path) -> None:
    with (
        deployment(tmp_path) as lab,
        parent_endpoint(Settings(metrics_port=0), public_port=lab.port) as parent,
    ):
        assert parent is not None
        directory = parent.directory
        assert os.environ[MULTIPROC_DIR] == str(directory)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert list(directory.iterdir()) == []
        env = {**lab.env, MULTIPROC_DIR: str(directory)}
        ports = (lab.port, free_port())
        urls = [f"http://127.0.0.1:{port}/mcp" for port in ports]
        token = lab.mint(["web_search"])
        with (
            worker(ports[0], env, tmp_path / "a.log") as a,
            worker(ports[1], env, tmp_path / "b.log") as b,
        ):
            for url, calls in zip(urls, (3, 2), strict=True):
                for _ in range(calls):
                    answer = post(url, tools_call("web_search", SEARCH), token)
                    assert answer.json()["result"]["isError"] is False
            assert post(urls[1], tools_call("usage"), token).status_code == 403

            both = scrape(parent.endpoint.url)
            check_metrics(both.text)
            assert both.value(CALLS, tool="web_search", outcome="allowed") == 5
            assert both.value(CALLS, tool="usage", outcome="denied") == 1
            refusals = "mcp_warden_http_refusals_total"
            assert both.value(refusals, status="403", reason="tool_not_allowed") == 1
            upstream = "mcp_warden_upstream_request_duration_seconds_count"
            assert both.value(upstream, status="200") == 5
            assert both.series(SYNCED) == [{"store": "sqlite"}]  # one series: the stalest worker
            assert both.value("mcp_warden_jwks_keys", source="file") == 1
            for proc in (a, b):
                assert (directory / f"gauge_livemin_{proc.pid}.db").exists()

            stop(b)
            parent.worker_exited(b.pid)  # as the supervisor does once it has reaped it
            assert not (directory / f"gauge_livemin_{b.pid}.db").exists()
            after = scrape(parent.endpoint.url)
            assert after.value(CALLS, tool="web_search", outcome="allowed") == 5
            assert after.series(SYNCED) == [{"store": "sqlite"}]  # worker a's, still live
        parent.worker_exited(a.pid)
        gone = scrape(parent.endpoint.url)
        assert gone.value(CALLS, tool="web_search", outcome="allowed") == 5  # counts stay
        assert gone.series(SYNCED) == []  # no live worker: no gauge
    assert not directory.exists()
    assert MULTIPROC_DIR not in os.environ
