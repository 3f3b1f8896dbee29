"""`mcp-warden serve --metrics-port`: a scrape after a known load shows exactly that load.

One real `serve` process (and one with two workers), the stub upstream, raw
JSON-RPC POSTs: granted calls, 403s, 401s (a bad signature, a malformed
token), an upstream 402 and a credential that cannot be loaded. The scrape
passes `promtool check metrics`, holds no token, sub or secret, and the public
port answers 404 for /metrics.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.credentials.files import write_atomic
from mcp_warden.demo.harness import post, tools_call
from tests.support.prometheus import check_metrics, metrics_url, scrape
from tests.support.server import deployment
from tests.support.waiting import eventually
from tests.support.workers import worker_pids

pytestmark = pytest.mark.slow

GRANTED = 5
FORBIDDEN = 3
BAD_SIGNATURE = 4
SEARCH = {"query": "metrics under load"}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_scrape_counts_what_the_load_made(tmp_path: Path, workers: int) -> None:
    """With `--workers 2` the parent's scrape sums both workers (multiprocess mode)."""
    started = time.time()
    serving = ("--metrics-port", "0", "--workers", str(workers))
    with deployment(tmp_path) as lab, lab.serve(*serving, timeout=60) as server:
        url = metrics_url(server.log)
        assert url.startswith("http://127.0.0.1:")
        assert not url.startswith(f"http://127.0.0.1:{lab.port}/")
        sub = "sub-" + secrets.token_hex(8)
        token = lab.mint(["web_search"], sub=sub)
        forged = lab.forge(key=Ed25519PrivateKey.generate(), sub=sub)

        def call(tool: str, bearer: str) -> httpx.Response:
            return post(server.url, tools_call(tool, SEARCH), bearer)

        for _ in range(GRANTED):
            answer = call("web_search", token)
            assert answer.status_code == 200
            assert answer.json()["result"]["isError"] is False
        for _ in range(FORBIDDEN):
            assert call("extract_url", token).status_code == 403
        for _ in range(BAD_SIGNATURE):
            assert call("web_search", forged).status_code == 401
        assert call("web_search", "not-a-token").status_code == 401
        lab.stub.mode(status=402, times=1)
        assert call("web_search", token).json()["result"]["isError"] is True
        store = lab.root / "mcp_credentials.enc"
        kept = store.read_bytes()
        write_atomic(store, b"{}")  # the credential is gone: its load fails
        assert call("web_search", token).json()["result"]["isError"] is True
        write_atomic(store, kept)

        metrics = scrape(url)
        check_metrics(metrics.text)
        calls = "mcp_warden_tool_calls_total"
        assert metrics.value(calls, tool="web_search", outcome="allowed") == GRANTED
        assert metrics.value(calls, tool="web_search", outcome="error") == 2
        assert metrics.value(calls, tool="web_search", outcome="denied") == 0
        assert metrics.value(calls, tool="extract_url", outcome="denied") == FORBIDDEN
        assert metrics.value(calls, tool="usage", outcome="allowed") == 0  # registered: shown
        durations = "mcp_warden_tool_call_duration_seconds_count"
        assert metrics.value(durations, tool="web_search") == GRANTED + 2
        assert metrics.value(durations, tool="extract_url") == FORBIDDEN
        refusals = "mcp_warden_http_refusals_total"
        assert metrics.value(refusals, status="403", reason="tool_not_allowed") == FORBIDDEN
        assert metrics.value(refusals, status="401", reason="bad_signature") == BAD_SIGNATURE
        assert metrics.value(refusals, status="401", reason="malformed") == 1
        assert len(metrics.series(refusals)) == 3
        upstream = "mcp_warden_upstream_request_duration_seconds_count"
        assert metrics.series(upstream) == [{"status": "200"}, {"status": "402"}]
        assert metrics.value(upstream, status="200") == GRANTED
        assert metrics.value(upstream, status="402") == 1
        failures = "mcp_warden_credential_load_failures_total"
        assert metrics.series(failures) == [{"reason": "credential_not_found"}]
        assert metrics.value(failures, reason="credential_not_found") == 1
        assert metrics.value("mcp_warden_jwks_keys", source="file") == 1
        loaded = metrics.value("mcp_warden_jwks_loaded_timestamp_seconds", source="file")
        assert loaded is not None
        assert started - 1 <= loaded <= time.time()
        synced = metrics.value("mcp_warden_revocation_synced_timestamp_seconds", store="sqlite")
        assert synced is not None
        assert time.time() - synced < 5  # refreshed every 0.5 s
        assert metrics.value("mcp_warden_revocation_entries", store="sqlite") == 0
        # prometheus_client's process collector reads its own process: not in multiprocess mode
        assert (metrics.value("process_cpu_seconds_total") is not None) == (workers == 1)
        assert not metrics.series("mcp_warden_issuer_requests_total")
        for secret in (sub, token, forged, lab.api_key, lab.env["MCP_ENCRYPTION_KEY"]):
            assert secret not in metrics.text

        lab.revoke(token)
        eventually(
            lambda: scrape(url).value("mcp_warden_revocation_entries", store="sqlite") == 1,
            10,
            "the revocation counted in the view's size",
        )
        public = httpx.get(f"http://127.0.0.1:{lab.port}/metrics", timeout=10, trust_env=False)
        assert public.status_code == 404
        assert "mcp_warden" not in public.text
        if workers > 1:
            dead = min(worker_pids(server.proc.pid))
            os.kill(dead, signal.SIGKILL)
            eventually(lambda: f"worker {dead} died" in server.log.read_text(), 60, "the death")
            after = scrape(url)
            check_metrics(after.text)  # the dead worker's counts stay in the sums
            assert after.value(calls, tool="web_search", outcome="allowed") == GRANTED
            assert after.value(refusals, status="401", reason="bad_signature") == BAD_SIGNATURE


def test_metrics_never_share_the_public_port(tmp_path: Path) -> None:
    with deployment(tmp_path) as lab:
        done = lab.cli("serve", "--port", str(lab.port), "--metrics-port", str(lab.port))
        assert done.returncode == 2
        assert done.stderr.strip() == (
            f"mcp-warden: --metrics-port {lab.port} is the public port; metrics are served on "
            "their own address only: choose another --metrics-port"
        )
