import sys

from mcp.server import MCPServer

from mcp_warden import Warden

warden = Warden.open()  # from the environment: MCP_JWKS, MCP_TOKEN_AUDIENCE, MCP_REVOCATION_URL...
server = MCPServer("calculator", **warden.server_options())


@warden.tool(server)
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@warden.tool(server)
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    warden.run_http(server, port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
