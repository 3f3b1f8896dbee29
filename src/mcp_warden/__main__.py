"""`python -m mcp_warden` runs the CLI."""

from mcp_warden.cli import main

main()
