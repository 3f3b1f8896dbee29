"""What `mcp-warden serve` tells an OAuth client about its issuer (real processes).

`mcp-warden serve` with MCP_TOKEN_ISSUER = the URL of a running `mcp-warden
issuer serve` (tests/issuer/stack.py):

- its RFC 9728 metadata names that issuer, exactly as configured, in
  `authorization_servers`, and lists the server's tools in `scopes_supported`;
- its 401 carries `resource_metadata`, and `scope="<tool>"` when the request
  is a `tools/call` that names the tool in its 2026-07-28 headers (the scope
  that operation needs); a 401 to any other request carries no scope;
- its 403 step-up (a token from the issuer without the tool) names the tool.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mcp_warden.demo.harness import post, tools_call
from tests.issuer.stack import Stack, protected_by_issuer

SEARCH = {"query": "discovery"}
DISCOVER = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with protected_by_issuer(tmp_path_factory.mktemp("discovery")) as stack:
        yield stack


def metadata_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.server.port}/.well-known/oauth-protected-resource/mcp"


def issuer_token(stack: Stack, tools: list[str]) -> str:
    """A token the issuer grants a fresh client allowed `tools` (client_secret_basic)."""
    client = stack.lab.add_client(f"discovery-{len(tools)}-{'-'.join(tools)}", tools)
    reply = stack.issuer.post_token(
        {"grant_type": "client_credentials", "resource": stack.url}, auth=client.basic
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def test_metadata_names_the_issuer_and_lists_the_servers_tools(stack: Stack) -> None:
    response = httpx.get(metadata_url(stack), trust_env=False)
    assert response.status_code == 200
    doc = response.json()
    assert doc["resource"] == stack.url
    assert doc["authorization_servers"] == [stack.lab.issuer_url]  # as set, no "/" added
    # Every tool the server has, and nothing else: what a token naming them all lists.
    every = issuer_token(stack, ["web_search", "extract_url", "usage"])
    listed = post(stack.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, every)
    names = sorted(tool["name"] for tool in listed.json()["result"]["tools"])
    assert doc["scopes_supported"] == names == ["extract_url", "usage", "web_search"]
    assert doc["bearer_methods_supported"] == ["header"]
    assert response.headers["cache-control"] == "public, max-age=3600"


def test_metadata_is_readable_cross_origin(stack: Stack) -> None:
    """Browser-based clients fetch it from another origin (CORS, as the SDK's own route)."""
    preflight = httpx.options(
        metadata_url(stack),
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        trust_env=False,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_401_to_connect_names_the_metadata_and_no_scope(stack: Stack) -> None:
    for message in (DISCOVER, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}):
        response = post(stack.url, message, None)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert f'resource_metadata="{metadata_url(stack)}"' in challenge
        assert "scope=" not in challenge


@pytest.mark.parametrize("token", [None, "not.a.token"])
def test_401_to_a_tools_call_names_the_tools_scope(stack: Stack, token: str | None) -> None:
    headers = {"Mcp-Method": "tools/call", "Mcp-Name": "extract_url"}
    call = tools_call("extract_url", {"url": "https://example.com/"})
    response = post(stack.url, call, token, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert challenge.endswith(f'resource_metadata="{metadata_url(stack)}", scope="extract_url"')
    # Without the 2026-07-28 headers the body is not read before authentication: no scope.
    legacy = post(stack.url, call, token)
    assert legacy.status_code == 401
    assert "scope=" not in legacy.headers["www-authenticate"]
    assert stack.server.stub.calls("/api/v1/extract") == 0


def test_401_scope_only_for_one_valid_tool_name(stack: Stack) -> None:
    cases = [
        [("Mcp-Method", "tools/call"), ("Mcp-Name", "web_search"), ("Mcp-Name", "extract_url")],
        [("Mcp-Method", "tools/call"), ("Mcp-Name", 'x", error="forged')],
        [("Mcp-Method", "tools/list"), ("Mcp-Name", "web_search")],
    ]
    for headers in cases:
        sent = [("Content-Type", "application/json"), ("Accept", "application/json"), *headers]
        with httpx.Client(trust_env=False) as http:
            response = http.post(stack.url, content=b"{}", headers=sent)
        assert response.status_code == 401
        assert "scope=" not in response.headers["www-authenticate"], headers


def test_403_step_up_names_the_tool_for_an_issuer_token(stack: Stack) -> None:
    token = issuer_token(stack, ["web_search"])
    assert post(stack.url, tools_call("web_search", SEARCH), token).status_code == 200
    response = post(stack.url, tools_call("extract_url", {"url": "https://example.com/"}), token)
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="extract_url", '
        f'resource_metadata="{metadata_url(stack)}", '
        'error_description="the token does not name this tool"'
    )
    assert stack.server.stub.calls("/api/v1/extract") == 0
