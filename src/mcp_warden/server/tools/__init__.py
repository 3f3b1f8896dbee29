"""Protected tools, one small module each.

The pattern (see `base.ToolSpec`): a tool module exposes
`tools(scavio: ScavioClient) -> list[ToolSpec]`, whose async functions take
their arguments as `Annotated[..., pydantic.Field(...)]` (the SDK publishes
and enforces those limits), return a `typing_extensions.TypedDict`, call the
upstream through the shared client (`ScavioClient.request_json` gives any new
Scavio endpoint the same just-in-time key, retries and error mapping), and
raise `ToolError` subclasses for anticipated failures.

Adding a fourth protected tool is a module like `scavio.py`'s `tools()` with
one function, plus its line in `all_tools` below. The server then does:

    scavio = ScavioClient.from_settings(settings, load_key)
    add_tools(server, all_tools(scavio), wrap=guard)   # guard: per-token check
    ...
    await scavio.aclose()                               # on shutdown
"""

from __future__ import annotations

from mcp_warden.server.tools import scavio as _scavio
from mcp_warden.server.tools.base import ToolSpec, add_tools
from mcp_warden.server.tools.scavio import ScavioClient

__all__ = ["ScavioClient", "ToolSpec", "add_tools", "all_tools"]


def all_tools(scavio: ScavioClient) -> list[ToolSpec]:
    """Every protected tool, in the order `tools/list` shows them; names are unique."""
    specs = [*_scavio.tools(scavio)]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two protected tools share a name: {sorted(names)}")
    return specs
