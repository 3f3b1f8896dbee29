"""A FastMCP server whose two tools mcp-warden protects: `pip install 'mcp-warden[fastmcp]'`.

    MCP_TOKEN_AUDIENCE=http://127.0.0.1:8000/mcp python examples/fastmcp_server.py
    mcp-warden token mint --sub alice --tools add --ttl 600   # may call `add`, never `shout`

Settings come from the environment as for `mcp-warden serve` (MCP_JWKS,
MCP_REVOCATION_URL, MCP_AUDIT_LOG...), the port from FastMCP's FASTMCP_PORT.
"""

from fastmcp import FastMCP

from mcp_warden import Warden
from mcp_warden.fastmcp import WardenAuth, WardenMiddleware

warden = Warden.open()
mcp = FastMCP("example", auth=WardenAuth(warden), middleware=[WardenMiddleware(warden)])


@mcp.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


if __name__ == "__main__":
    with warden:
        mcp.run(transport="http", stateless_http=True)
