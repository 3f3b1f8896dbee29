"""`mcp-warden demo` as a process: every step's outcome, no secret printed, nothing left behind."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcp_warden.demo.harness import cli_env, run_cli


def ports_in(output: str) -> list[int]:
    """The ports the demo's stub and server listened on, as it printed them."""
    found = re.findall(r"(?:listening|serving) on http://127\.0\.0\.1:(\d+)", output)
    return [int(port) for port in found]


def assert_nothing_left(output: str) -> None:
    workdir = Path(re.search(r"working in (\S+)", output).group(1))  # type: ignore[union-attr]
    assert not workdir.exists()
    ports = set(ports_in(output))
    assert len(ports) == 2, f"want the stub's and the server's port in the output, found {ports}"
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def test_the_leftover_check_fails_when_it_finds_no_port(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="port"):
        assert_nothing_left(f"working in {tmp_path / 'removed'}\n")


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_nothing_behind() -> None:
    done = run_cli(["demo"], cli_env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    expected = [
        "Results: 5",  # 7: web_search through the MCP Python client, as in the tutorial
        "the MCP client gets: tool 'extract_url' is not available with this token",
        'HTTP 403, WWW-Authenticate: Bearer error="insufficient_scope", scope="extract_url"',
        "the upstream received no extract_url call",
        "the server now answers HTTP 401: revoked: the token has been revoked",
        "next call with a new token: Results: 5",
        "the new one: no restart needed",
        "offline stub that imitates the Scavio Search API",
        "mcp-warden cred set scavio_api_key",
    ]
    positions = [out.index(text) for text in expected[:7]]
    assert positions == sorted(positions)  # the steps ran in order
    for text in expected[7:]:
        assert text in out
    audit = [json.loads(line) for line in out.splitlines() if line.strip().startswith('{"time"')]
    assert [(line["tool"], line["outcome"]) for line in audit] == [
        ("web_search", "allowed"),
        ("extract_url", "denied"),  # through the MCP client
        ("extract_url", "denied"),  # the same call as a plain POST
        (None, "refused"),  # the revoked token's 401
        ("web_search", "allowed"),  # after the rotation
    ]
    assert audit[3]["reason"] == "revoked"
    # Nothing secret: no master key (64 hex), no API key, no token (a JWS starts eyJ).
    assert not re.search(r"\b[0-9a-f]{64}\b", out)
    assert "sk_demo_" not in out
    assert "eyJ" not in out
    assert_nothing_left(out)


@pytest.mark.slow
def test_demo_stops_what_it_started_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_warden", "demo"],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "serving on" not in seen:  # the stub and the server are both running now
        assert time.monotonic() < deadline, seen
        line = proc.stdout.readline()
        assert line, f"demo ended early: {seen}"
        seen += line
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "Traceback" not in rest
    assert_nothing_left(seen)
