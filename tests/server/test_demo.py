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
from typing import Any

import pytest

from mcp_warden.demo.harness import cli_env, run_cli


def ports_in(output: str) -> list[int]:
    """The ports the demo's stub, server and issuer listened on, as it printed them."""
    found = re.findall(r"(?:listening|serving) on http://127\.0\.0\.1:(\d+)", output)
    return [int(port) for port in found]


def assert_nothing_left(output: str, started: int) -> None:
    """The work directory is gone and none of the `started` processes' ports answers."""
    workdir = Path(re.search(r"working in (\S+)", output).group(1))  # type: ignore[union-attr]
    assert not workdir.exists()
    ports = set(ports_in(output))
    assert len(ports) == started, f"want {started} ports in the output, found {ports}"
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def test_the_leftover_check_fails_when_it_finds_no_port(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="port"):
        assert_nothing_left(f"working in {tmp_path / 'removed'}\n", 2)


def audit_section(output: str, title: str) -> list[dict[str, Any]]:
    """The JSON lines the demo printed under the heading that starts with `title`."""
    section = output.split("\n" + title, 1)[1].split("\n\n", 1)[0]
    return [json.loads(line) for line in section.splitlines()[1:]]


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_nothing_behind() -> None:
    done = run_cli(["demo"], cli_env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    issuer = re.search(r"issuer serving on (http://127\.0\.0\.1:\d+) ", out)
    assert issuer is not None, out
    client_id = re.search(r"client_id (mcpw_\w+);", out).group(1)  # type: ignore[union-attr]
    token = f"POST {issuer.group(1)}/token -> 200, scope asked: extract_url usage web_search"
    expected = [
        "Results: 5",  # 7: web_search through the MCP Python client, as in the tutorial
        "the MCP client gets: tool 'extract_url' is not available with this token",
        'HTTP 403, WWW-Authenticate: Bearer error="insufficient_scope", scope="extract_url"',
        "the upstream received no extract_url call",
        "the server now answers HTTP 401: revoked: the token has been revoked",
        "next call with a new token: Results: 5",
        "the new one: no restart needed",
        # 11-14: the client fetches its own tokens from the issuer; no token mint
        f"$ mcp-warden clients add demo-agent --tools web_search\n   client_id {client_id}",
        "POST /mcp (server/discover) -> 401\n"
        "     GET /.well-known/oauth-protected-resource/mcp -> 200\n"
        f"     GET {issuer.group(1)}/.well-known/oauth-authorization-server -> 200\n"
        f"     {token}; granted: web_search\n",
        "Results: 5",
        # the step-up the issuer cannot help: it grants only what the client may have
        f"POST /mcp (tools/call) -> 403\n     {token}; granted: web_search\n"
        "     POST /mcp (tools/call) -> 403\n"
        "   the issuer grants only web_search; the client gets: tool 'extract_url' is not "
        "available with this token",
        f"$ mcp-warden clients set {client_id} --tools web_search,extract_url",
        # the same session's step-up once the operator allowed the tool
        f"POST /mcp (tools/call) -> 403\n     {token}; granted: extract_url web_search\n"
        "     POST /mcp (tools/call) -> 200\n",
        "Extracted 63 characters of https://modelcontextprotocol.io/specification",
        "offline stub that imitates the Scavio Search API",
        "mcp-warden cred set scavio_api_key",
    ]
    at = 0
    for text in expected[:-2]:  # each found after the one before: the steps ran in order
        at = out.index(text, at)
    for text in expected[-2:]:
        assert text in out
    audit = audit_section(out, "Audit log")
    assert [(line["sub"], line["tool"], line["outcome"]) for line in audit] == [
        ("demo-user", "web_search", "allowed"),
        ("demo-user", "extract_url", "denied"),  # through the MCP client
        ("demo-user", "extract_url", "denied"),  # the same call as a plain POST
        (None, None, "refused"),  # the revoked token's 401
        ("demo-user", "web_search", "allowed"),  # after the rotation
        (None, None, "refused"),  # 13: the OAuth client's first request, with no token
        (client_id, "web_search", "allowed"),
        (client_id, "extract_url", "denied"),  # the 403 that starts the step-up
        (client_id, "extract_url", "denied"),  # the retry with the step-up's token
        (client_id, "extract_url", "denied"),  # 14: the first token lacks it
        (client_id, "extract_url", "allowed"),  # the step-up's token names it
    ]
    assert [line["reason"] for line in audit if line["outcome"] == "refused"] == [
        "revoked",
        "missing_token",
    ]
    issued = audit_section(out, "Issuer audit log")
    assert [(line["client_id"], line["outcome"], line["tools"]) for line in issued] == [
        (client_id, "issued", ["web_search"]),
        (client_id, "issued", ["web_search"]),
        (client_id, "issued", ["extract_url", "web_search"]),
    ]
    # Each token the issuer issued is the one the server saw next (jti), none minted.
    assert [line["jti"] for line in issued] == list(
        dict.fromkeys(line["jti"] for line in audit if line["sub"] == client_id)
    )
    # Nothing secret: no master key (64 hex), no API key, no token (a JWS starts eyJ),
    # no client secret (mcpws_...).
    assert not re.search(r"\b[0-9a-f]{64}\b", out)
    assert "sk_demo_" not in out
    assert "eyJ" not in out
    assert "mcpws_" not in out
    assert_nothing_left(out, 3)  # the stub, the server and the issuer


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
    assert_nothing_left(seen, 2)  # the stub and the server; the issuer starts later
