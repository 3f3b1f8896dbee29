"""`mcp-warden serve`: the MCP server over streamable HTTP (bearer tokens) or stdio (MCP_TOKEN)."""

from __future__ import annotations

import sys
from typing import Literal

import click

from mcp_warden.cli import metrics_options, metrics_settings


@click.command()
@click.option(
    "--transport",
    type=click.Choice(["http", "stdio"]),
    default="http",
    show_default=True,
    help="http: streamable HTTP at /mcp with bearer tokens; stdio: one client, token in MCP_TOKEN.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to bind.")
@click.option(
    "--port", type=int, default=8000, show_default=True, help="HTTP: TCP port (0: any free port)."
)
@metrics_options
@click.pass_context
def serve(  # noqa: PLR0917  (click passes the options positionally)
    ctx: click.Context,
    transport: Literal["http", "stdio"],
    host: str,
    port: int,
    metrics_host: str | None,
    metrics_port: int | None,
) -> None:
    """Serve the protected tools; each token lists and calls only the tools it names.

    HTTP prints `mcp-warden: serving on http://HOST:PORT/mcp` on stderr once it
    accepts connections, answers GET /healthz without authentication, and
    stops gracefully on SIGTERM. Clients must use the URL in MCP_TOKEN_AUDIENCE.
    With a metrics port, HTTP also serves Prometheus /metrics there (stdio: never).
    """
    from mcp_warden.server import app  # noqa: PLC0415  (the SDK loads only for `serve`)

    cfg = metrics_settings(ctx, metrics_host, metrics_port)
    try:
        if transport == "stdio":
            app.serve_stdio(cfg)
        else:
            app.serve_http(cfg, host=host, port=port)
    except KeyboardInterrupt:
        sys.exit(130)
