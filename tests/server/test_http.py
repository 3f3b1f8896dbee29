"""The real `mcp-warden serve` over streamable HTTP: the official Python MCP client and raw POSTs.

One server process for the module, a real stub upstream, the SQLite
denylist; revocations and rotations are made by other `mcp-warden` processes.
"""

from __future__ import annotations

import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.shared.exceptions import MCPError

from mcp_warden.demo.harness import call_http, mcp_http, post, tools_call
from mcp_warden.demo.stub import key_id
from tests.support.server import Deployment, Served, audit_lines, run

SEARCH = {"query": "mcp server security"}


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_stub")]


def test_tools_list_shows_only_the_tokens_tools(lab: Deployment, server: Served) -> None:
    async def names(tools: list[str]) -> list[str]:
        async with mcp_http(server.url, lab.mint(tools)) as client:
            return [tool.name for tool in (await client.list_tools()).tools]

    assert run(lambda: names(["web_search"])) == ["web_search"]
    assert sorted(run(lambda: names(["usage", "web_search"]))) == ["usage", "web_search"]
    assert run(lambda: names(["not_a_tool_here"])) == []


def test_allowed_tool_calls_the_upstream_with_the_stored_key(
    lab: Deployment, server: Served
) -> None:
    result = run(lambda: call_http(server.url, lab.mint(["web_search"]), "web_search", SEARCH))
    assert not result.is_error
    assert result.structured_content is not None
    assert len(result.structured_content["results"]) == 5
    assert lab.stub.keys_used() == [key_id(lab.api_key)]


@pytest.mark.parametrize("tool", ["extract_url", "usage", "no_such_tool"])
def test_other_tools_are_refused_before_any_upstream_call(
    lab: Deployment, server: Served, tool: str
) -> None:
    token = lab.mint(["web_search"])
    with pytest.raises(MCPError) as refused:
        run(lambda: call_http(server.url, token, tool, {"url": "https://example.com"}))
    assert refused.value.error.code == -32602
    assert f"tool {tool!r} is not available with this token" in refused.value.error.message
    assert lab.stub.calls() == 0


def test_refusal_is_403_insufficient_scope_naming_the_tool(lab: Deployment, server: Served) -> None:
    response = post(server.url, tools_call("extract_url", id=41), lab.mint(["web_search"]))
    assert response.status_code == 403
    metadata = f"http://127.0.0.1:{lab.port}/.well-known/oauth-protected-resource/mcp"
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="extract_url", resource_metadata="{metadata}", '
        'error_description="the token does not name this tool"'
    )
    body = response.json()
    assert body["id"] == 41
    assert body["error"]["code"] == -32602
    assert lab.stub.calls() == 0


def test_hidden_and_nonexistent_tools_get_byte_identical_answers(
    lab: Deployment, server: Served
) -> None:
    token = lab.mint(["web_search"])

    def answer(name: str) -> tuple[int, str, bytes]:
        response = post(server.url, tools_call(name, {"q": 1}), token)
        challenge = response.headers["www-authenticate"].replace(name, "NAME")
        return response.status_code, challenge, response.content.replace(name.encode(), b"NAME")

    hidden, missing = answer("usage"), answer("zzzzz")
    assert hidden == missing
    assert hidden[0] == 403
    assert lab.stub.calls() == 0


def test_batches_are_refused_whole(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"])
    batch = [tools_call("web_search", SEARCH, id=1), tools_call("extract_url", id=2)]
    response = post(server.url, batch, token)
    assert response.status_code == 400
    assert "batches are not accepted" in response.json()["error"]["message"]
    assert lab.stub.calls() == 0


def _refusal(server: Served, token: str | None) -> httpx.Response:
    response = post(server.url, tools_call("web_search", SEARCH), token)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert 'resource_metadata="http://127.0.0.1:' in challenge
    if token is not None:
        assert token not in response.text
        assert token not in challenge
    return response


def test_missing_or_malformed_token_is_401(lab: Deployment, server: Served) -> None:
    assert "Authentication required" in _refusal(server, None).headers["www-authenticate"]
    response = post(
        server.url, tools_call("web_search", SEARCH), None, headers={"Authorization": "Basic eDp5"}
    )
    assert response.status_code == 401
    malformed = _refusal(server, "not.a.token")
    assert 'error_description="malformed: ' in malformed.headers["www-authenticate"]
    assert lab.stub.calls() == 0


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bad_signature", "bad_signature"),
        ("expired", "expired"),
        ("wrong_audience", "wrong_audience"),
        ("wrong_issuer", "wrong_issuer"),
    ],
)
def test_refused_tokens_get_401_saying_which_check_failed(
    lab: Deployment, server: Served, kind: str, reason: str
) -> None:
    now = int(time.time())
    token = {
        "bad_signature": lambda: lab.forge(Ed25519PrivateKey.generate()),
        "expired": lambda: lab.forge(iat=now - 120, nbf=now - 120, exp=now - 60),
        "wrong_audience": lambda: lab.mint(["web_search"], aud="http://127.0.0.1:1/mcp"),
        "wrong_issuer": lambda: lab.forge(iss="someone-else"),
    }[kind]()
    response = _refusal(server, token)
    assert f'error_description="{reason}: ' in response.headers["www-authenticate"]
    assert response.json()["error_description"].startswith(f"{reason}: ")
    assert lab.stub.calls() == 0


def test_python_client_without_token_is_refused(lab: Deployment, server: Served) -> None:
    with pytest.raises(MCPError):
        run(lambda: call_http(server.url, None, "web_search", SEARCH))
    assert lab.stub.calls() == 0


def test_revoked_token_is_refused_within_a_second(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"], sub="revoke-me")
    assert post(server.url, tools_call("web_search", SEARCH), token).status_code == 200
    lab.revoke(token)  # `mcp-warden token revoke -` in another process
    revoked_at = time.monotonic()
    while True:
        response = post(server.url, tools_call("web_search", SEARCH), token)
        if response.status_code == 401:
            break
        assert time.monotonic() - revoked_at < 3.0, "revocation not seen within 3 s"
        time.sleep(0.02)
    seen = time.monotonic() - revoked_at
    print(f"revocation seen by the server {seen * 1000:.0f} ms after `token revoke` returned")
    assert seen < 1.0
    assert 'error_description="revoked: ' in response.headers["www-authenticate"]
    with pytest.raises(MCPError):
        run(lambda: call_http(server.url, token, "web_search", SEARCH))


def test_rotated_credential_is_used_on_the_next_call_without_restart(
    lab: Deployment, server: Served
) -> None:
    token = lab.mint(["web_search"])
    assert not run(lambda: call_http(server.url, token, "web_search", SEARCH)).is_error
    new = lab.rotate_key()  # `mcp-warden cred rotate` in another process; stub takes only `new`
    after = run(lambda: call_http(server.url, token, "web_search", SEARCH))
    assert not after.is_error, after.content
    assert lab.stub.keys_used()[-1] == key_id(new)
    assert server.proc.poll() is None


def test_healthz_and_metadata_need_no_token(lab: Deployment, server: Served) -> None:
    base = f"http://127.0.0.1:{lab.port}"
    health = httpx.get(f"{base}/healthz", trust_env=False)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    metadata = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", trust_env=False)
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == lab.audience
    # MCP_TOKEN_ISSUER is not a URL (tokens come from `token mint`): the server's own
    # origin, which serves no OAuth endpoint; the tools are the scopes tokens name.
    assert metadata.json()["authorization_servers"] == [base]
    assert metadata.json()["scopes_supported"] == ["extract_url", "usage", "web_search"]


def test_audit_lines_record_each_call_without_secrets(lab: Deployment, server: Served) -> None:
    token = lab.mint(["web_search"], sub="audited")
    secret_query = {"query": "very private search words"}
    run(lambda: call_http(server.url, token, "web_search", secret_query))
    post(server.url, tools_call("usage"), token)
    lab.stub.mode(status=402)
    run(lambda: call_http(server.url, token, "web_search", secret_query))
    mine = [line for line in audit_lines(lab.audit_log) if line["sub"] == "audited"]
    assert [(line["tool"], line["outcome"], line.get("reason")) for line in mine] == [
        ("web_search", "allowed", None),
        ("usage", "denied", "tool_not_allowed"),
        ("web_search", "error", "out_of_credits"),
    ]
    for line in mine:
        assert set(line) <= {
            "time",
            "sub",
            "jti",
            "tool",
            "outcome",
            "reason",
            "latency_ms",
            "client",
        }
        assert line["client"] == "127.0.0.1"  # the peer's address, nothing of the request
        assert line["time"].endswith("Z")
        assert line["latency_ms"] >= 0
    text = lab.audit_log.read_text()
    for secret in (token, lab.api_key, "very private search words", lab.env["MCP_ENCRYPTION_KEY"]):
        assert secret not in text
