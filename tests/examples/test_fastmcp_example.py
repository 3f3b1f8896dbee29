"""examples/fastmcp_server.py as a real process, driven by the Python and TypeScript MCP clients.

The example runs as a user would run it (`python examples/fastmcp_server.py`,
settings from the environment); tokens are minted with the issuer's own
function and revoked with `mcp-warden token revoke` in another process,
through the SQLite denylist the server syncs from.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir
from tests.support.procs import REPO, background, cli_env, free_port, run_cli, run_node
from tests.support.server import ISSUER, audit_lines, mcp_error, post, run, tools_call

EXAMPLE = REPO / "examples" / "fastmcp_server.py"
ADD_ARGS = {"a": 2, "b": 3}
ADD = {"name": "add", "arguments": ADD_ARGS}
SHOUT = {"name": "shout", "arguments": {"text": "hi"}}


@dataclass
class Example:
    """The running example, its settings and where it writes."""

    root: Path
    url: str
    env: dict[str, str]

    @property
    def metadata(self) -> str:
        return self.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")

    def mint(self, tools: Sequence[str], *, sub: str) -> str:
        return mint(
            self.root / "keys", issuer=ISSUER, sub=sub, tools=tools, ttl=600, audience=self.url
        )

    def audit(self) -> list[dict[str, Any]]:
        return audit_lines(self.root / "audit.jsonl")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("fastmcp_example")
    KeyDir(root / "keys").new()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = cli_env(
        {
            "MCP_KEYS_DIR": str(root / "keys"),
            "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
            "MCP_TOKEN_AUDIENCE": url,
            "MCP_AUDIT_LOG": str(root / "audit.jsonl"),
            "FASTMCP_PORT": str(port),
            "FASTMCP_SHOW_SERVER_BANNER": "false",
        }
    )
    argv = [sys.executable, str(EXAMPLE)]
    with background(argv, env=env, port=port, cwd=root, log=root / "server.log", timeout=30.0):
        yield Example(root, url, env)


@contextlib.asynccontextmanager
async def python_client(
    url: str, token: str, responses: list[httpx2.Response]
) -> AsyncIterator[Client]:
    """The official Python MCP client over streamable HTTP; every HTTP response lands in
    `responses`, so a test sees the status and headers behind what the client raises."""

    async def keep(response: httpx2.Response) -> None:
        responses.append(response)

    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
            event_hooks={"response": [keep]},
        ) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def typescript_client(url: str, token: str, *calls: dict[str, Any]) -> dict[str, Any]:
    """node/mcp_client.mjs: the TypeScript SDK client, token in its environment."""
    plan = json.dumps({"calls": list(calls)})
    done = run_node("mcp_client.mjs", [url], env=cli_env(MCP_BEARER_TOKEN=token), input=plan)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_python_client_calls_its_tool_and_gets_403_for_the_other(example: Example) -> None:
    token = example.mint(["add"], sub="python-client")
    responses: list[httpx2.Response] = []

    async def session() -> tuple[list[str], Any, MCPError]:
        async with python_client(example.url, token, responses) as client:
            listed = [tool.name for tool in (await client.list_tools()).tools]
            added = await client.call_tool("add", ADD_ARGS)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("shout", {"text": "hi"})
            return listed, added, refused.value

    listed, added, refused = run(session)
    assert listed == ["add"]
    assert added.is_error is False
    assert added.structured_content == {"result": 5}
    assert responses[-1].status_code == 403
    assert responses[-1].headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="shout", '
        f'resource_metadata="{example.metadata}", '
        'error_description="the token does not name this tool"'
    )
    assert refused.error.code == -32602
    assert "tool 'shout' is not available with this token" in refused.error.message
    calls = [line for line in example.audit() if line["sub"] == "python-client"]
    assert [(line["tool"], line["outcome"], line.get("reason")) for line in calls] == [
        ("add", "allowed", None),
        ("shout", "denied", "tool_not_allowed"),
    ]


def test_typescript_client_calls_its_tool_and_gets_403_for_the_other(example: Example) -> None:
    out = typescript_client(example.url, example.mint(["add"], sub="node-client"), ADD, SHOUT)
    assert out["tools"] == ["add"]
    added, refused = out["calls"]
    assert added["isError"] is False
    assert added["structured"] == {"result": 5}
    assert refused["error"]["code"] == 403  # StreamableHTTPError: the HTTP status
    assert "tool 'shout' is not available with this token" in refused["error"]["message"]


def test_revoked_token_gets_401_naming_the_revocation(example: Example) -> None:
    token = example.mint(["add", "shout"], sub="revoked-client")
    assert post(example.url, tools_call("add", ADD_ARGS), token).status_code == 200
    done = run_cli(["token", "revoke", "-"], example.env, input=token)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 1.0
    while post(example.url, tools_call("add", ADD_ARGS), token).status_code != 401:
        assert time.monotonic() < deadline, "revocation not seen within 1 s"
        time.sleep(0.02)

    responses: list[httpx2.Response] = []

    async def session() -> None:
        async with python_client(example.url, token, responses) as client:
            await client.call_tool("add", ADD_ARGS)

    with pytest.raises(ExceptionGroup) as failed:  # the SDK client raises from its task group
        run(session)
    assert mcp_error(failed.value) is not None
    assert responses[-1].status_code == 401
    challenge = responses[-1].headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert 'error_description="revoked: the token has been revoked"' in challenge
    assert token not in challenge

    out = typescript_client(example.url, token, ADD)
    assert out["error"]["code"] == 401
    assert "revoked: " in out["error"]["message"]
    refused = [line for line in example.audit() if line.get("reason") == "revoked"]
    assert refused
    assert all((line["outcome"], line["status"]) == ("refused", 401) for line in refused)
