"""examples/fastmcp_server.py as a real process, driven by the Python and TypeScript MCP clients.

The example runs as a user would run it (`python examples/fastmcp_server.py`,
settings from the environment); tokens are minted with the issuer's own
function and revoked with `mcp-warden token revoke` in another process,
through the SQLite denylist the server syncs from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from mcp_warden.demo.harness import cli_env, mcp_error, post, tools_call
from tests.support.examples import EXAMPLES, Answer, ExampleLab, example_lab, recorded
from tests.support.procs import run_node
from tests.support.server import audit_lines, run

EXAMPLE = EXAMPLES / "fastmcp_server.py"
ADD_ARGS = {"a": 2, "b": 3}
ADD = {"name": "add", "arguments": ADD_ARGS}
SHOUT = {"name": "shout", "arguments": {"text": "hi"}}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleLab]:
    with example_lab(tmp_path_factory.mktemp("fastmcp_example")) as lab, lab.serve(EXAMPLE):
        yield lab


def typescript_client(url: str, token: str, *calls: dict[str, Any]) -> dict[str, Any]:
    """node/mcp_client.mjs: the TypeScript SDK client, token in its environment."""
    plan = json.dumps({"calls": list(calls)})
    done = run_node("mcp_client.mjs", [url], env=cli_env(MCP_BEARER_TOKEN=token), input=plan)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_python_client_calls_its_tool_and_gets_403_for_the_other(example: ExampleLab) -> None:
    token = example.mint(["add"], sub="python-client")
    answers: list[Answer] = []

    async def session() -> tuple[list[str], Any, MCPError]:
        async with recorded(example.url, token, answers) as client:
            listed = [tool.name for tool in (await client.list_tools()).tools]
            added = await client.call_tool("add", ADD_ARGS)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("shout", {"text": "hi"})
            return listed, added, refused.value

    listed, added, refused = run(session)
    assert listed == ["add"]
    assert added.is_error is False
    assert added.structured_content == {"result": 5}
    assert answers[-1].status == 403
    assert answers[-1].challenge == (
        'Bearer error="insufficient_scope", scope="shout", '
        f'resource_metadata="{example.metadata}", '
        'error_description="the token does not name this tool"'
    )
    assert refused.error.code == -32602
    assert "tool 'shout' is not available with this token" in refused.error.message
    calls = [line for line in audit_lines(example.audit_log) if line["sub"] == "python-client"]
    assert [(line["tool"], line["outcome"], line.get("reason")) for line in calls] == [
        ("add", "allowed", None),
        ("shout", "denied", "tool_not_allowed"),
    ]


def test_typescript_client_calls_its_tool_and_gets_403_for_the_other(example: ExampleLab) -> None:
    out = typescript_client(example.url, example.mint(["add"], sub="node-client"), ADD, SHOUT)
    assert out["tools"] == ["add"]
    added, refused = out["calls"]
    assert added["isError"] is False
    assert added["structured"] == {"result": 5}
    assert refused["error"]["code"] == 403  # StreamableHTTPError: the HTTP status
    assert "tool 'shout' is not available with this token" in refused["error"]["message"]


def test_revoked_token_gets_401_naming_the_revocation(example: ExampleLab) -> None:
    token = example.mint(["add", "shout"], sub="revoked-client")
    assert post(example.url, tools_call("add", ADD_ARGS), token).status_code == 200
    example.revoke(token)
    deadline = time.monotonic() + 1.0
    while post(example.url, tools_call("add", ADD_ARGS), token).status_code != 401:
        assert time.monotonic() < deadline, "revocation not seen within 1 s"
        time.sleep(0.02)

    answers: list[Answer] = []

    async def session() -> None:
        async with recorded(example.url, token, answers) as client:
            await client.call_tool("add", ADD_ARGS)

    with pytest.raises(ExceptionGroup) as failed:  # the SDK client raises from its task group
        run(session)
    assert mcp_error(failed.value) is not None
    assert answers[-1].status == 401
    challenge = answers[-1].challenge or ""
    assert challenge.startswith('Bearer error="invalid_token"')
    assert 'error_description="revoked: the token has been revoked"' in challenge
    assert token not in challenge

    out = typescript_client(example.url, token, ADD)
    assert out["error"]["code"] == 401
    assert "revoked: " in out["error"]["message"]
    refused = [line for line in audit_lines(example.audit_log) if line.get("reason") == "revoked"]
    assert refused
    assert all((line["outcome"], line["status"]) == ("refused", 401) for line in refused)
