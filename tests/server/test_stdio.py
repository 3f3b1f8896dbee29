"""`mcp-warden serve --transport stdio` under MCP_TOKEN, spawned by the official Python client."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from mcp_warden.demo.stub import key_id
from tests.support.server import Deployment, run

SEARCH = {"query": "stdio transport"}
SERVE_STDIO = ("serve", "--transport", "stdio")


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_stub")]


@contextlib.asynccontextmanager
async def session(lab: Deployment, token: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_warden", *SERVE_STDIO],
        env={**lab.env, "MCP_TOKEN": token},
    )
    async with Client(params) as client:
        yield client


async def refused(client: Client, tool: str) -> MCPError:
    try:
        await client.call_tool(tool, {"url": "https://example.com"})
    except MCPError as exc:
        return exc
    raise AssertionError(f"{tool} was not refused")


def test_stdio_serves_exactly_the_tokens_tools_with_the_current_key(lab: Deployment) -> None:
    async def scenario() -> tuple[list[str], int, MCPError, MCPError, str]:
        async with session(lab, lab.mint(["web_search"])) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            result = await client.call_tool("web_search", SEARCH)
            assert result.structured_content is not None
            hidden = await refused(client, "extract_url")
            missing = await refused(client, "no_such_tool")
            new = lab.rotate_key()  # `mcp-warden cred rotate` in another process, mid-session
            after = await client.call_tool("web_search", SEARCH)
            assert not after.is_error, after.content
            return names, len(result.structured_content["results"]), hidden, missing, new

    old = lab.api_key
    names, count, hidden, missing, new = run(scenario)
    assert (names, count) == (["web_search"], 5)
    assert hidden.error.code == missing.error.code == -32602
    assert hidden.error.message.replace("extract_url", "X") == missing.error.message.replace(
        "no_such_tool", "X"
    )
    assert lab.stub.calls("/api/v1/extract") == 0
    assert lab.stub.keys_used() == [key_id(old), key_id(new)]


def test_stdio_session_stops_working_once_its_token_is_revoked(lab: Deployment) -> None:
    token = lab.mint(["web_search"], sub="stdio-revoked")

    async def scenario() -> MCPError:
        async with session(lab, token) as client:
            assert not (await client.call_tool("web_search", SEARCH)).is_error
            lab.revoke(token)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                try:
                    await client.list_tools()
                except MCPError as exc:
                    return exc
                time.sleep(0.05)
            raise AssertionError("the revoked token kept working for 3 s")

    error = run(scenario)
    assert "no longer valid (revoked" in error.error.message
    assert token not in error.error.message


def test_stdio_session_stops_working_once_its_token_expires(lab: Deployment) -> None:
    ttl = 15  # long enough to spawn the server and call once, even on a loaded 2-core machine
    exp = int(time.time()) + ttl
    token = lab.mint(["web_search"], ttl=ttl, sub="stdio-expiring")

    async def scenario() -> MCPError:
        async with session(lab, token) as client:
            assert not (await client.call_tool("web_search", SEARCH)).is_error
            time.sleep(max(0.0, exp - time.time()) + 0.05)
            try:
                await client.call_tool("web_search", SEARCH)
            except MCPError as exc:
                return exc
            raise AssertionError("the expired token kept working")

    error = run(scenario)
    assert "no longer valid (expired" in error.error.message
    assert lab.stub.calls() == 1


def test_stdio_refuses_to_start_without_a_valid_token(lab: Deployment) -> None:
    now = int(time.time())
    tokens = {
        "missing": None,
        "expired": lab.forge(iat=now - 120, nbf=now - 120, exp=now - 60),
        "bad_signature": lab.forge(Ed25519PrivateKey.generate()),
        "wrong_audience": lab.mint(["web_search"], aud="http://elsewhere.test/mcp"),
    }
    argv = [sys.executable, "-m", "mcp_warden", *SERVE_STDIO]
    procs = {  # started together: each pays the SDK import once, in parallel
        kind: subprocess.Popen(
            argv,
            env={**lab.env, **({"MCP_TOKEN": token} if token else {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind, token in tokens.items()
    }
    for kind, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, (kind, stderr)
        assert stdout == ""  # nothing reached the protocol channel
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("mcp-warden: MCP_TOKEN")
        token = tokens[kind]
        if token is not None:
            assert token not in stderr
            assert f"({kind}: " in lines[0]
