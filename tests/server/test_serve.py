"""`mcp-warden serve` as an operator meets it: startup errors, port 0, SIGTERM, and a
revocation store that goes away (503 with Retry-After, then recovery without a restart).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mcp_warden.demo.harness import post, tools_call, wait_for_line
from tests.support.redis_server import RedisServer
from tests.support.server import BANNER, Deployment, deployment, refused_starts

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "mcp_warden", "serve"]


def test_startup_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    with deployment(tmp_path) as lab:
        busy = subprocess.Popen(  # something already listens on lab.port
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(lab.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            any_port = ["--port", "0"]
            cases = {
                "MCP_ENCRYPTION_KEY is not set": (any_port, {"MCP_ENCRYPTION_KEY": ""}),
                "cannot read a JWKS": (any_port, {"MCP_JWKS": str(tmp_path / "absent.json")}),
                "MCP_REVOCATION_URL scheme 'postgres'": (
                    any_port,
                    {"MCP_REVOCATION_URL": "postgres://user:pw@db/x"},
                ),
                "MCP_TOKEN_AUDIENCE='mcp.example.com' is not an http(s) URL": (
                    any_port,
                    {"MCP_TOKEN_AUDIENCE": "mcp.example.com"},
                ),
                f"cannot listen on 127.0.0.1:{lab.port}": (["--port", str(lab.port)], {}),
            }
            for stderr in refused_starts(lab.env, cases).values():
                assert "pw@" not in stderr  # a URL's password is never echoed
        finally:
            busy.terminate()
            busy.wait(10)


def test_port_0_prints_the_bound_address_and_sigterm_stops_it(tmp_path: Path) -> None:
    with deployment(tmp_path) as lab:
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*SERVE, "--port", "0"], env=lab.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            banner = wait_for_line(log, proc, BANNER)
            url = banner.removeprefix(BANNER)
            port = int(url.removeprefix("http://127.0.0.1:").removesuffix("/mcp"))
            assert port != lab.port
            warning = wait_for_line(log, proc, "mcp-warden: WARNING MCP_TOKEN_AUDIENCE")
            assert f"is {lab.audience} but this server listens on 127.0.0.1:{port}/mcp" in warning
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False)
            assert health.json() == {"status": "ok"}
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text()
        assert "Traceback" not in text
        assert sorted(line for line in text.splitlines() if line) == sorted([warning, banner])


def _wait_status(lab: Deployment, token: str, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = post(lab.audience, tools_call("web_search", {"query": "q"}), token)
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, f"still {response.status_code} after {within} s"
        time.sleep(0.1)


def test_unreachable_revocation_store_is_503_then_recovers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = {
        "MCP_REVOCATION_URL": redis_server.url,
        "MCP_REVOCATION_STALE_SECONDS": "1",
        "MCP_REVOCATION_REFRESH_SECONDS": "0.2",
    }
    with deployment(tmp_path, **settings) as lab, lab.serve():
        token = lab.mint(["web_search"])
        health = f"http://127.0.0.1:{lab.port}/healthz"
        _wait_status(lab, token, 200, within=5)
        redis_server.stop()
        refused = _wait_status(lab, token, 503, within=10)
        assert refused.headers["retry-after"] == "5"
        error = refused.json()["error"]
        assert error["message"].startswith("revocation_unavailable: ")
        assert token not in refused.text
        assert httpx.get(health, trust_env=False).status_code == 503
        redis_server.start()
        _wait_status(lab, token, 200, within=10)
        assert httpx.get(health, trust_env=False).json() == {"status": "ok"}


def test_a_symlink_planted_at_the_audit_log_stops_serve_and_leaves_its_target(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not an audit log\n")
    victim.chmod(0o644)
    link = tmp_path / "planted-audit.jsonl"
    link.symlink_to(victim)
    with deployment(tmp_path, MCP_AUDIT_LOG=str(link)) as lab:
        proc = subprocess.Popen(
            [*SERVE, "--port", "0"],
            env=lab.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 2, stderr
    assert stdout == ""
    assert stderr.strip().splitlines() == [
        f"mcp-warden: the audit log (MCP_AUDIT_LOG) {link} is a symbolic link; mcp-warden does "
        "not follow links to its files: point the setting at the real file or remove the link"
    ]
    assert victim.read_text() == "not an audit log\n"
    assert victim.stat().st_mode & 0o777 == 0o644


def test_an_existing_audit_log_open_to_others_is_warned_about(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    audit.chmod(0o644)
    with deployment(tmp_path) as lab, lab.serve() as server:
        assert lab.audit_log == audit
        warning = wait_for_line(server.log, server.proc, "mcp-warden: WARNING ")
    assert warning == (
        f"mcp-warden: WARNING {audit} is accessible to group or others (mode 644); "
        f"run `chmod 600 {audit}`"
    )
    assert audit.stat().st_mode & 0o777 == 0o644  # warned about, never changed behind the back
