"""The Scavio Search API as an upstream: the client, without anything of MCP."""
