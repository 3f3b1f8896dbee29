"""mcp-warden: keep an MCP server safe when any one secret leaks."""

__version__ = "0.1.0"
