"""Refusals at the HTTP layer leave an audit line; unknown prompts leave no traceback (item 14).

A real `serve` with MCP_AUDIT_LOG set to a file. Every refused request
(401, 403, 413, a batch) writes exactly one line with its reason and the
client's address, the token's sub and jti once it verified, and nothing of
the token itself.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.demo.harness import LEGACY_VERSION, post, tools_call
from tests.support.server import Deployment, Served, audit_lines

pytestmark = pytest.mark.slow

SEARCH = {"query": "audited refusals"}
MAX_BODY = 4 * 1024 * 1024


def new_lines(lab: Deployment, before: int) -> list[dict[str, Any]]:
    return audit_lines(lab.audit_log)[before:]


def count(lab: Deployment) -> int:
    return len(audit_lines(lab.audit_log)) if lab.audit_log.exists() else 0


def test_refused_tokens_leave_one_audit_line_with_the_reason(
    lab: Deployment, server: Served
) -> None:
    forged = lab.forge(Ed25519PrivateKey.generate())
    cases = [(forged, "bad_signature"), ("not.a.token", "malformed"), (None, "missing_token")]
    for token, reason in cases:
        before = count(lab)
        assert post(server.url, tools_call("web_search", SEARCH), token).status_code == 401
        [line] = new_lines(lab, before)
        assert line == {
            "time": line["time"],
            "sub": None,
            "jti": None,
            "tool": None,
            "outcome": "refused",
            "reason": reason,
            "status": 401,
            "client": "127.0.0.1",
        }
    assert forged not in lab.audit_log.read_text()


def test_a_403_leaves_one_audit_line_with_the_client(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"], sub="scoped")
    before = count(lab)
    assert post(server.url, tools_call("usage"), token).status_code == 403
    [line] = new_lines(lab, before)
    assert (line["sub"], line["tool"], line["outcome"], line["reason"], line["client"]) == (
        "scoped",
        "usage",
        "denied",
        "tool_not_allowed",
        "127.0.0.1",
    )


def test_a_refused_batch_leaves_one_audit_line(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"], sub="batcher")
    before = count(lab)
    batch = [tools_call("web_search", SEARCH, id=1), tools_call("web_search", SEARCH, id=2)]
    assert post(server.url, batch, token).status_code == 400
    [line] = new_lines(lab, before)
    assert (line["sub"], line["outcome"], line["reason"], line["status"]) == (
        "batcher",
        "refused",
        "batch",
        400,
    )
    assert line["jti"]
    assert token not in lab.audit_log.read_text()


def test_a_413_leaves_one_audit_line(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"], sub="bulky")
    before = count(lab)
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{lab.port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"MCP-Protocol-Version: {LEGACY_VERSION}\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    )
    with contextlib.closing(socket.create_connection(("127.0.0.1", lab.port), timeout=5)) as sock:
        sock.sendall(head.encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 413 ")
    [line] = new_lines(lab, before)
    assert (line["sub"], line["outcome"], line["reason"], line["status"]) == (
        "bulky",
        "refused",
        "body_too_large",
        413,
    )


def test_prompts_get_is_a_json_rpc_error_and_no_traceback(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"])
    request = {"jsonrpc": "2.0", "id": 7, "method": "prompts/get", "params": {"name": "x"}}
    for _ in range(3):
        response = post(server.url, request, token)
        assert response.status_code == 200
        assert response.json()["id"] == 7
        assert response.json()["error"] == {"code": -32602, "message": "Unknown prompt: x"}
    health = httpx.get(f"http://127.0.0.1:{lab.port}/healthz", trust_env=False)
    assert health.status_code == 200  # the server answered after the prompts/get calls...
    output = server.output()
    assert "Traceback" not in output  # ...and logged nothing about them
    assert "ERROR" not in output
