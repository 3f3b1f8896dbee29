"""The FastMCP adapter in-process: FastMCP's in-memory client, the MCP_TOKEN caller, the audit.

The HTTP side (bearer tokens, the 401 wording, the 403 step-up) runs against
the example as a real process: tests/examples/test_fastmcp_example.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from mcp_warden.config import Settings
from mcp_warden.demo.harness import LEGACY_VERSION
from mcp_warden.errors import ConfigError
from mcp_warden.fastmcp import WardenAuth, WardenMiddleware
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.grants import tool_refused_message
from mcp_warden.warden import Warden
from tests.support.server import audit_lines, run
from tests.support.tokens import AUDIENCE, ISSUER, TokenLab


@pytest.fixture
def lab(tmp_path: Path) -> TokenLab:
    return TokenLab(tmp_path / "keys")


def warden_for(lab: TokenLab, audit: Path, token: str | None, audience: str = AUDIENCE) -> Warden:
    settings = Settings(token_issuer=ISSUER, token_audience=audience, token=token)
    return Warden(
        settings, verifier=lab.verifier, denylist=lab.denylist, audit=AuditLog.open(audit)
    )


def protected(warden: Warden, auth: WardenAuth | None = None) -> FastMCP:
    mcp = FastMCP("unit", auth=auth, middleware=[WardenMiddleware(warden)])

    @mcp.tool
    def echo(text: str) -> str:
        return text

    @mcp.tool
    def length(text: str) -> int:
        return len(text)

    @mcp.tool
    def fail() -> str:
        raise RuntimeError("boom")

    return mcp


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def served(lab: TokenLab, audit: Path) -> Iterator[FastMCP]:
    token = lab.token(claims=lab.claims(tools=["echo", "fail"]))
    with warden_for(lab, audit, token) as warden:
        yield protected(warden)


def outcomes(audit: Path) -> list[tuple[Any, ...]]:
    return [(line["tool"], line["outcome"], line.get("reason")) for line in audit_lines(audit)]


def test_without_http_the_caller_is_mcp_token(served: FastMCP, audit: Path) -> None:
    async def session() -> tuple[list[str], Any, ToolError]:
        async with Client(served) as client:
            listed = [tool.name for tool in await client.list_tools()]
            echoed = await client.call_tool("echo", {"text": "hi"})
            with pytest.raises(ToolError) as refused:
                await client.call_tool("length", {"text": "hi"})
            return listed, echoed, refused.value

    listed, echoed, refused = run(session)
    assert listed == ["echo", "fail"]
    assert echoed.structured_content == {"result": "hi"}
    assert str(refused) == tool_refused_message("length")
    assert outcomes(audit) == [("echo", "allowed", None), ("length", "denied", "tool_not_allowed")]
    assert {(line["sub"], line["jti"]) for line in audit_lines(audit)} == {("alice", "jti-0001")}


def test_failed_calls_are_audited_as_errors(served: FastMCP, audit: Path) -> None:
    async def session() -> None:
        async with Client(served) as client:
            with pytest.raises(ToolError):
                await client.call_tool("fail", {})
            with pytest.raises(ToolError):
                await client.call_tool("echo", {"text": 2})

    run(session)
    assert outcomes(audit) == [
        ("fail", "error", "tool_error"),
        ("echo", "error", "invalid_arguments"),
    ]


def test_a_revoked_mcp_token_lists_and_calls_nothing(
    lab: TokenLab, served: FastMCP, audit: Path
) -> None:
    lab.denylist.revoke_jti("jti-0001", int(lab.clock.now) + 600)

    async def session() -> tuple[MCPError, ToolError]:
        async with Client(served) as client:
            with pytest.raises(MCPError) as listed:
                await client.list_tools()
            with pytest.raises(ToolError) as called:
                await client.call_tool("echo", {"text": "hi"})
            return listed.value, called.value

    listed, called = run(session)
    for refused in (listed, called):
        assert "MCP_TOKEN) was refused (revoked)" in str(refused)
    assert outcomes(audit) == [("echo", "denied", "revoked")]


def test_without_mcp_token_nothing_is_listed_or_called(lab: TokenLab, audit: Path) -> None:
    async def session() -> tuple[MCPError, ToolError]:
        with warden_for(lab, audit, None) as warden:
            async with Client(protected(warden)) as client:
                with pytest.raises(MCPError) as listed:
                    await client.list_tools()
                with pytest.raises(ToolError) as called:
                    await client.call_tool("echo", {"text": "hi"})
                return listed.value, called.value

    for refused in run(session):
        assert "MCP_TOKEN is not set" in str(refused)
    assert outcomes(audit) == [("echo", "denied", "missing_token")]


def test_auth_verifies_with_our_verifier(lab: TokenLab, audit: Path) -> None:
    with warden_for(lab, audit, None) as warden:
        auth = WardenAuth(warden)
        token = lab.token(claims=lab.claims(tools=["length", "echo"]))
        access = run(lambda: auth.verify_token(token))
        refused = run(lambda: auth.verify_token(lab.token(claims=lab.claims(aud="http://x/mcp"))))
        (route,) = auth.get_routes("/mcp")
    assert access is not None
    assert (access.client_id, access.scopes) == ("alice", ["echo", "length"])
    assert access.claims["jti"] == "jti-0001"
    assert refused is None
    assert route.path == "/.well-known/oauth-protected-resource/mcp"


def test_the_403_layer_follows_the_path_fastmcp_serves_at(lab: TokenLab, audit: Path) -> None:
    """FastMCP asks for the middleware before it names the MCP path: the layer still learns it."""
    token = lab.token(claims=lab.claims(tools=["echo"]))
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "length"}}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": LEGACY_VERSION,
    }

    async def session() -> httpx.Response:
        with warden_for(lab, audit, None) as warden:
            app = protected(warden, WardenAuth(warden)).http_app(
                path="/api", stateless_http=True, json_response=True
            )
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http,
            ):
                return await http.post("/api", json=call, headers=headers)

    refused = run(session)
    assert refused.status_code == 403
    assert 'error="insufficient_scope", scope="length"' in refused.headers["www-authenticate"]
    assert refused.json()["error"]["message"] == tool_refused_message("length")
    assert outcomes(audit) == [("length", "denied", "tool_not_allowed")]


def test_auth_refuses_an_audience_that_is_not_a_url(lab: TokenLab, audit: Path) -> None:
    with (
        warden_for(lab, audit, None, audience="not a url") as warden,
        pytest.raises(ConfigError, match="MCP_TOKEN_AUDIENCE"),
    ):
        WardenAuth(warden)


def test_mcp_warden_imports_without_fastmcp_and_the_adapter_names_the_extra() -> None:
    script = (
        "import sys\n"
        "sys.modules['fastmcp'] = None  # as if not installed\n"
        "import mcp_warden, mcp_warden.warden\n"
        "try:\n"
        "    import mcp_warden.fastmcp\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'mcp-warden[fastmcp]'" in done.stdout
