"""Protected tools, one small module each.

The pattern (see `base.ToolSpec` and `scavio.py`): a tool module exposes
`tools(client) -> list[ToolSpec]`, whose async functions take their
arguments as `Annotated[..., pydantic.Field(...)]` (the SDK publishes and
enforces those limits), return a `typing_extensions.TypedDict`, and make one
call of the upstream's client. The client lives outside the server (the
Scavio one is `mcp_warden.scavio`: just-in-time key, retries, error mapping;
`ScavioClient.request_json` serves a further Scavio endpoint); anticipated
failures reach the SDK as `ToolError` subclasses (`scavio.reported`).

Adding a fourth protected tool is one more function in such a module, plus,
for a new module, its line in `all_tools` below. The server then does:

    scavio = ScavioClient.from_settings(settings, load_key)
    add_tools(server, all_tools(scavio), wrap=guard)   # guard: per-token check
    ...
    await scavio.aclose()                               # on shutdown
"""

from __future__ import annotations

from mcp_warden.scavio.client import ScavioClient
from mcp_warden.server.tools import scavio as _scavio
from mcp_warden.server.tools.base import ToolSpec, add_tools

__all__ = ["ScavioClient", "ToolSpec", "add_tools", "all_tools"]


def all_tools(scavio: ScavioClient) -> list[ToolSpec]:
    """Every protected tool, in the order `tools/list` shows them; names are unique."""
    specs = [*_scavio.tools(scavio)]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two protected tools share a name: {sorted(names)}")
    return specs
