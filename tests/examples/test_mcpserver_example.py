"""examples/mcpserver_server.py as a real process, driven by the official Python MCP client.

The README's "Use as a library" example is that file, byte for byte, so this
test runs the README's example too.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mcp_warden.demo.harness import mcp_error
from tests.support.examples import EXAMPLES, Answer, ExampleLab, example_lab, recorded
from tests.support.procs import REPO
from tests.support.server import audit_lines, run

SCRIPT = EXAMPLES / "mcpserver_server.py"


def test_the_readme_library_example_is_the_example_file() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Use as a library\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "README's 'Use as a library' section has no python block"
    assert blocks[0] == SCRIPT.read_text(encoding="utf-8")


@dataclass
class Session:
    """One client session: the tools it was shown, a call's result or refusal, the HTTP answers."""

    names: list[str] = field(default_factory=list)
    result: CallToolResult | None = None
    refused: MCPError | None = None
    answers: list[Answer] = field(default_factory=list)


async def session(lab: ExampleLab, token: str, tool: str, arguments: dict[str, Any]) -> Session:
    """tools/list, then one tools/call; a JSON-RPC error ends the session as `refused`."""
    seen = Session()
    try:
        async with recorded(lab.url, token, seen.answers) as client:
            seen.names = [tool.name for tool in (await client.list_tools()).tools]
            seen.result = await client.call_tool(tool, arguments)
    except BaseException as exc:
        seen.refused = mcp_error(exc)
        if seen.refused is None:
            raise
    return seen


async def refused_once_revoked(lab: ExampleLab, token: str) -> Session:
    """The first session refused (the server syncs its denylist: wait for it, bounded)."""
    deadline = time.monotonic() + 15
    while True:
        seen = await session(lab, token, "add", {"a": 1, "b": 1})
        if seen.refused is not None:
            return seen
        assert time.monotonic() < deadline, "a revoked token kept working"
        await anyio.sleep(0.1)


def test_the_mcpserver_example_serves_only_the_tokens_tools(tmp_path: Path) -> None:
    with example_lab(tmp_path) as lab, lab.serve(SCRIPT):
        token = lab.mint(["add"])
        allowed = run(lambda: session(lab, token, "add", {"a": 2, "b": 3}))
        assert allowed.names == ["add"]
        assert allowed.result is not None
        assert not allowed.result.is_error
        assert allowed.result.structured_content == {"result": 5}
        assert {answer.status for answer in allowed.answers} == {200}

        other = run(lambda: session(lab, token, "echo", {"text": "hi"}))
        assert other.refused is not None
        assert other.refused.error.code == -32602
        assert other.answers[-1].status == 403
        assert (other.answers[-1].challenge or "").startswith(
            'Bearer error="insufficient_scope", scope="echo"'
        )

        lab.revoke(token)
        revoked = run(lambda: refused_once_revoked(lab, token))
        assert revoked.answers[-1].status == 401
        assert 'error_description="revoked: the token has been revoked"' in (
            revoked.answers[-1].challenge or ""
        )

    audit = [
        (line["tool"], line["outcome"], line.get("reason")) for line in audit_lines(lab.audit_log)
    ]
    assert audit[:2] == [("add", "allowed", None), ("echo", "denied", "tool_not_allowed")]
    assert audit[-1] == (None, "refused", "revoked")
