"""What a protected tool is, and how the server registers it.

A protected tool is a `ToolSpec`: a valid MCP tool name, a description for
clients, and an async function whose signature the `mcp` SDK turns into the
tool's input schema (use `Annotated[..., pydantic.Field(...)]` for limits, so
the SDK refuses bad arguments before the function runs) and whose return
annotation (a `typing_extensions.TypedDict`) becomes its output schema.

The function reports a failure it anticipated by raising the SDK's
`ToolError`: the client then receives a result with `isError` set and the
message, and the server logs that message (never a traceback). So a message
must never hold a secret, and by our audit rule not the caller's query either.

Each tool module exposes `tools(upstream) -> list[ToolSpec]`, binding its
functions to the shared upstream client; `mcp_warden.server.tools.all_tools`
lists every module's tools, and the server registers them with `add_tools`
and wraps them in its per-token guard by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp.shared.tool_name_validation import validate_tool_name
from mcp.types import ToolAnnotations

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer


def read_only_web() -> ToolAnnotations:
    """Annotations for tools that only read from the web through an upstream API."""
    return ToolAnnotations(read_only_hint=True, open_world_hint=True)


@dataclass(frozen=True)
class ToolSpec:
    """One protected tool, ready for `MCPServer.add_tool`."""

    name: str
    description: str
    fn: Callable[..., Awaitable[Any]]
    annotations: ToolAnnotations = field(default_factory=read_only_web)

    def __post_init__(self) -> None:
        if not validate_tool_name(self.name).is_valid:
            raise ValueError(
                f"{self.name!r} is not a valid MCP tool name (1-128 of A-Z a-z 0-9 _ - .)"
            )


def add_tools(
    server: MCPServer,
    specs: Iterable[ToolSpec],
    *,
    wrap: Callable[[ToolSpec], Callable[..., Awaitable[Any]]] | None = None,
) -> None:
    """Register `specs` on `server` with structured output.

    `wrap(spec)` may return a replacement function (for example the per-token
    guard); it must keep the original signature (`functools.wraps` does, as
    the SDK reads `__wrapped__`) so the published schemas stay the same.
    """
    for spec in specs:
        server.add_tool(
            wrap(spec) if wrap is not None else spec.fn,
            name=spec.name,
            description=spec.description,
            annotations=spec.annotations,
            structured_output=True,
        )
