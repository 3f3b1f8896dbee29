"""`Warden` as a library user meets it, in-process: what it refuses to protect, its stdio
start-up checks, its lifespan, and what `tool`/`add_tools` register.

Serving over HTTP as a real process is tests/examples; the product's own server is
tests/server/test_http.py and test_stdio.py.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.types import ToolAnnotations

from mcp_warden import ConfigError, Settings, Warden
from mcp_warden.demo.harness import mcp_error
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.tools import ToolSpec
from mcp_warden.tokens.revocation import MemoryDenylist
from tests.support.server import run
from tests.support.tokens import AUDIENCE, TokenLab


class CountingDenylist(MemoryDenylist):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


def warden_for(lab: TokenLab, **env: str) -> Warden:
    settings = Settings.from_env({"MCP_TOKEN_AUDIENCE": AUDIENCE, **env})
    audit = AuditLog.open(lab.path / "audit.jsonl")
    return Warden(settings, verifier=lab.verifier, denylist=CountingDenylist(), audit=audit)


@pytest.fixture
def lab(tmp_path: Path) -> TokenLab:
    return TokenLab(tmp_path)


def test_it_refuses_to_serve_a_server_built_without_its_options(lab: TokenLab) -> None:
    warden = warden_for(lab)
    other = warden_for(lab)
    for server in (MCPServer("plain"), MCPServer("other", **other.server_options())):
        with pytest.raises(ConfigError, match=r"MCPServer\(name, \*\*warden.server_options\(\)\)"):
            warden.http_app(server)
        with pytest.raises(ConfigError, match="server_options"):
            run(functools.partial(warden.serve_stdio, server))


def test_a_non_url_audience_is_named_when_the_http_app_is_built(lab: TokenLab) -> None:
    warden = warden_for(lab, MCP_TOKEN_AUDIENCE="mcp.example.com")
    options = warden.server_options()
    assert "auth" not in options  # stdio needs none: the server can still be built
    assert "token_verifier" not in options
    server = MCPServer("mine", **options)
    with pytest.raises(ConfigError, match=r"MCP_TOKEN_AUDIENCE='mcp.example.com' is not an http"):
        warden.http_app(server)


def test_stdio_refuses_to_start_without_a_valid_token(lab: TokenLab) -> None:
    expired = lab.token(claims=lab.claims(exp=int(lab.clock.now) - 1))
    for token, words in ((None, "MCP_TOKEN is not set"), (expired, "MCP_TOKEN was refused (exp")):
        env = {"MCP_TOKEN": token} if token else {}
        warden = warden_for(lab, **env)
        server = MCPServer("mine", **warden.server_options())
        with pytest.raises(ConfigError) as refused:
            run(functools.partial(warden.serve_stdio, server))
        assert str(refused.value).startswith(words)
        if token is not None:
            assert token not in str(refused.value)


def test_the_lifespan_runs_yours_inside_and_closes_the_warden_once(lab: TokenLab) -> None:
    warden = warden_for(lab)
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def mine(_server: MCPServer[Any]) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"db": "open"}
        events.append("stop")

    options = warden.server_options(lifespan=mine)
    server = MCPServer("mine", **options)

    async def lifetime() -> dict[str, str]:
        async with options["lifespan"](server) as state:
            assert isinstance(warden.denylist, CountingDenylist)
            assert warden.denylist.closed == 0
            return dict(state)

    assert run(lifetime) == {"db": "open"}
    assert events == ["start", "stop"]
    warden.close()  # again, as a caller's `finally` does
    assert isinstance(warden.denylist, CountingDenylist)
    assert warden.denylist.closed == 1


def test_tool_and_add_tools_register_guarded_tools(lab: TokenLab) -> None:
    warden = warden_for(lab)
    server = MCPServer("mine", **warden.server_options())

    @warden.tool(server)
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @warden.tool(server, "shout", description="Upper-case the text.")
    def upper(text: str) -> str:
        return text.upper()

    async def when() -> dict[str, str]:
        return {"time": "now"}

    hint = ToolAnnotations(read_only_hint=True)
    warden.add_tools(server, [ToolSpec("clock", "The time.", when, annotations=hint)])
    assert run(lambda: add(1, 2)) == 3  # the decorator returns the function itself

    tools = {tool.name: tool for tool in run(server.list_tools)}
    assert sorted(tools) == ["add", "clock", "shout"]
    assert (tools["add"].description, tools["shout"].description) == (
        "Add two integers.",
        "Upper-case the text.",
    )
    assert tools["clock"].annotations == hint
    assert tools["clock"].output_schema is not None  # structured, as ToolSpecs are

    async def connect() -> BaseException | None:
        try:
            async with Client(server):
                return None
        except BaseException as exc:
            return mcp_error(exc) or exc

    refused = run(connect)  # no HTTP bearer token and no MCP_TOKEN: nothing is served
    assert refused is not None
    assert "no verified bearer token" in str(refused)
