"""The tools registered as-is on the `mcp` SDK's MCPServer, driven by the SDK's own
client (in-process), calling the stub app over HTTP semantics (in-process too)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import Stub
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.server.tools import ToolSpec, add_tools, all_tools
from tests.support.stub import key_runs
from tests.tools.cases import FAILURES, missing_key_logged

pytestmark = pytest.mark.anyio

QUERY = "quarterly revenue forecast"


def server_with(scavio: ScavioClient, **options: Any) -> MCPServer:
    server = MCPServer("warden-test")
    add_tools(server, all_tools(scavio), **options)
    return server


def tool(scavio: ScavioClient, name: str) -> Callable[..., Awaitable[Any]]:
    """The function registered as tool `name` (what the SDK calls)."""
    return {spec.name: spec.fn for spec in all_tools(scavio)}[name]


@pytest.mark.parametrize("case", FAILURES, ids=[repr(f[0]) for f in FAILURES])
async def test_each_client_failure_reaches_the_sdk_as_a_tool_error_with_its_reason(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    case: tuple[dict[str, Any], str, str, int],
) -> None:
    mode, reason, message, calls = case
    stub.mode(**mode, times=calls)
    async with make_client() as scavio:
        with pytest.raises(ScavioError) as failed:
            await tool(scavio, "web_search")(query=QUERY)
    assert isinstance(failed.value, ToolError)  # the SDK turns it into isError
    assert failed.value.reason == reason  # the guard's audit line reads it
    assert message in str(failed.value)
    assert failed.value.__cause__ is None
    assert stub.calls() == calls


async def test_an_argument_the_client_refuses_is_a_tool_error_too(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    async with make_client() as scavio:
        with pytest.raises(ScavioError) as failed:
            await tool(scavio, "extract_url")(url="https://user:pw@example.org/")
    assert isinstance(failed.value, ToolError)
    assert failed.value.reason == "invalid_argument"
    assert str(failed.value) == "url must not contain a user name or password"
    assert stub.calls() == 0


async def test_tools_list_publishes_names_limits_and_output_schemas(
    make_client: Callable[..., ScavioClient],
) -> None:
    async with make_client() as scavio, Client(server_with(scavio)) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert list(listed) == ["web_search", "extract_url", "usage"]
    search = listed["web_search"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["maxLength"] == 500
    assert search["properties"]["num_results"] == {
        "default": 5,
        "description": "How many results to return (1-10).",
        "maximum": 10,
        "minimum": 1,
        "title": "Num Results",
        "type": "integer",
    }
    extract = listed["extract_url"].input_schema
    assert extract["properties"]["format"]["enum"] == ["markdown", "text", "html"]
    assert listed["usage"].input_schema["properties"] == {}
    output = listed["web_search"].output_schema
    assert output is not None
    assert output["required"] == ["query", "results"]
    for tool in listed.values():
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True


async def test_web_search_returns_structured_results(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    async with make_client("tutorial") as scavio, Client(server_with(scavio)) as client:
        result = await client.call_tool("web_search", {"query": QUERY})
    assert not result.is_error
    assert result.structured_content is not None
    assert len(result.structured_content["results"]) == 5
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    assert stub.calls("/api/v1/search") == 1


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("web_search", {"query": "x" * 501}, "String should have at most 500 characters"),
        ("web_search", {"query": "ok", "num_results": 11}, "less than or equal to 10"),
        ("web_search", {"query": "ok", "country": "france"}, "String should match pattern"),
        ("extract_url", {"url": "ftp://example.org/"}, "url must be an http or https address"),
        ("extract_url", {"url": "https://example.org/", "format": "pdf"}, "Input should be"),
    ],
)
async def test_bad_arguments_are_tool_errors_and_never_reach_the_stub(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    tool: str,
    arguments: dict[str, Any],
    message: str,
) -> None:
    async with make_client() as scavio, Client(server_with(scavio)) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    assert message in result.content[0].text  # type: ignore[union-attr]
    assert stub.calls() == 0


async def test_an_upstream_failure_is_an_is_error_result_and_the_server_goes_on(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with make_client() as scavio, Client(server_with(scavio)) as client:
        stub.mode(status=401, times=1)
        refused = await client.call_tool("web_search", {"query": QUERY})
        stub.mode(status=402, times=1)
        broke = await client.call_tool("usage", {})
        fine = await client.call_tool("usage", {})
    assert refused.is_error
    assert broke.is_error
    assert not fine.is_error
    assert refused.content[0].text == (  # type: ignore[union-attr]
        "Error executing tool web_search: the stored Scavio key was rejected (HTTP 401); "
        "run `mcp-warden cred rotate scavio_api_key`"
    )
    assert "out of credits (HTTP 402)" in broke.content[0].text  # type: ignore[union-attr]
    assert fine.structured_content is not None
    assert fine.structured_content["plan"] == "stub"
    assert "Tool 'web_search' failed" in caplog.text  # the SDK logged the failure...
    assert QUERY not in caplog.text
    assert api_key not in caplog.text


@pytest.mark.parametrize("echo", ["upper", "partial", "split"])
async def test_an_upstream_echo_of_the_key_never_reaches_the_mcp_client(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    echo: str,
) -> None:
    caplog.set_level(logging.INFO)
    async with make_client() as scavio, Client(server_with(scavio)) as client:
        stub.mode(status=400, times=1, echo_key=echo)
        result = await client.call_tool("web_search", {"query": QUERY})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == (
        "Error executing tool web_search: Scavio refused the request as invalid (HTTP 400); "
        "check the arguments (Scavio's own reason is in the server log)"
    )
    assert key_runs(text, api_key) == []
    assert "(key sent: " in caplog.text  # the server log has the upstream's words...
    assert "[redacted]" in caplog.text  # ...masked
    assert key_runs(caplog.text, api_key) == []


async def test_a_credential_error_shows_the_mcp_client_no_server_path(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    store = tmp_path / "mcp_credentials.enc"
    master = "00" * 32
    credentials = CredentialStore(store, parse_key(master))
    credentials.set("other_api_key", "a value")  # a real store, without the Scavio key

    async with (
        make_client(load_key=lambda: credentials.load("scavio_api_key")) as scavio,
        Client(server_with(scavio)) as client,
    ):
        result = await client.call_tool("usage", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == (
        "Error executing tool usage: the upstream credential is not available on this "
        "server (no_credential); the server log has the cause"
    )
    assert str(tmp_path) not in text
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("mcp_warden")]
    assert logged == [missing_key_logged(store)]
    assert stub.calls() == 0


async def test_a_guard_can_wrap_every_tool_and_keep_its_schema(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    seen: list[str] = []

    def guard(spec: ToolSpec) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(spec.fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            seen.append(spec.name)
            return await spec.fn(*args, **kwargs)

        return guarded

    async with make_client() as scavio:
        async with Client(server_with(scavio)) as plain:
            expected = [t.input_schema for t in (await plain.list_tools()).tools]
        async with Client(server_with(scavio, wrap=guard)) as client:
            assert [t.input_schema for t in (await client.list_tools()).tools] == expected
            result = await client.call_tool("web_search", {"query": QUERY, "num_results": 2})
    assert not result.is_error
    assert result.structured_content is not None
    assert len(result.structured_content["results"]) == 2
    assert seen == ["web_search"]


def test_tool_specs_need_valid_mcp_names() -> None:
    async def noop() -> None:
        return None

    with pytest.raises(ValueError, match="not a valid MCP tool name"):
        ToolSpec("web search", "has a space", noop)
