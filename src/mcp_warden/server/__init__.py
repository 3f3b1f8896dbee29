"""The MCP server: auth hook, per-tool guard, tools."""
