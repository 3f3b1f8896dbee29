"""The official TypeScript SDK client (npm @modelcontextprotocol/sdk, real Node) against the
real `mcp-warden serve`, sending its token as a bearer header (node/mcp_client.mjs).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mcp_warden.demo.harness import cli_env, post, tools_call
from mcp_warden.demo.stub import key_id
from tests.support.procs import run_node
from tests.support.server import Deployment, Served

SEARCH = {"name": "web_search", "arguments": {"query": "typescript client"}}


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_stub")]


def node_client(url: str, token: str | None, *calls: dict[str, Any]) -> dict[str, Any]:
    env = cli_env(MCP_BEARER_TOKEN=token) if token is not None else cli_env()
    done = run_node("mcp_client.mjs", [url], env=env, input=json.dumps({"calls": list(calls)}))
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_node_client_calls_its_tools_and_is_refused_the_others(
    lab: Deployment, server: Served
) -> None:
    out = node_client(
        server.url,
        lab.mint(["web_search"]),
        SEARCH,
        {"name": "extract_url", "arguments": {"url": "https://example.com"}},
        {"name": "no_such_tool", "arguments": {}},
    )
    assert out["tools"] == ["web_search"]
    search, hidden, missing = out["calls"]
    assert search["isError"] is False
    assert len(search["structured"]["results"]) == 5
    for refused, name in ((hidden, "extract_url"), (missing, "no_such_tool")):
        assert refused["error"]["code"] == 403  # StreamableHTTPError: the HTTP status
        assert f"tool '{name}' is not available with this token" in refused["error"]["message"]
    assert lab.stub.calls() == 1
    assert lab.stub.calls("/api/v1/extract") == 0


@pytest.mark.parametrize("kind", ["none", "expired", "wrong_audience"])
def test_node_client_without_a_valid_token_gets_401(
    lab: Deployment, server: Served, kind: str
) -> None:
    now = int(time.time())
    token = {
        "none": None,
        "expired": lab.forge(iat=now - 120, nbf=now - 120, exp=now - 60),
        "wrong_audience": lab.mint(["web_search"], aud="http://127.0.0.1:1/mcp"),
    }[kind]
    out = node_client(server.url, token, SEARCH)
    assert out["error"]["code"] == 401
    if token is not None:
        assert f"{kind}: " in out["error"]["message"]
        assert token not in out["error"]["message"]
    assert lab.stub.calls() == 0


def test_node_client_sees_revocation_and_rotation(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"], sub="node-client")
    new = lab.rotate_key()  # `mcp-warden cred rotate` while the server runs
    first = node_client(server.url, token, SEARCH)
    assert first["calls"][0]["isError"] is False
    assert lab.stub.keys_used() == [key_id(new)]
    lab.revoke(token)  # `mcp-warden token revoke` in another process
    deadline = time.monotonic() + 1.0
    while post(server.url, tools_call("web_search"), token).status_code != 401:
        assert time.monotonic() < deadline, "revocation not seen within 1 s"
        time.sleep(0.02)
    after = node_client(server.url, token, SEARCH)
    assert after["error"]["code"] == 401
    assert "revoked: " in after["error"]["message"]
