"""`mcp-warden serve`: the MCP server over streamable HTTP (bearer tokens) or stdio (MCP_TOKEN)."""

from __future__ import annotations

import sys
from typing import Literal

import click

from mcp_warden.cli import metrics_options, metrics_settings
from mcp_warden.config import parse_workers
from mcp_warden.errors import ConfigError


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
@click.option(
    "--workers",
    "processes",
    metavar="N|auto",
    help="HTTP: processes accepting on the port; auto: one per core this process may use "
    "[default: MCP_SERVE_WORKERS, or 1].",
)
@metrics_options
@click.pass_context
def serve(  # noqa: PLR0917  (click passes the options positionally)
    ctx: click.Context,
    transport: Literal["http", "stdio"],
    host: str,
    port: int,
    processes: str | None,
    metrics_host: str | None,
    metrics_port: int | None,
) -> None:
    """Serve the protected tools; each token lists and calls only the tools it names.

    HTTP prints `mcp-warden: serving on http://HOST:PORT/mcp` on stderr once it
    (every worker, with --workers) accepts connections, answers GET /healthz
    without authentication, and stops gracefully on SIGTERM. Clients must use
    the URL in MCP_TOKEN_AUDIENCE. With a metrics port, HTTP also serves
    Prometheus /metrics there (stdio: never).
    """
    cfg = metrics_settings(ctx, metrics_host, metrics_port)
    if processes is not None:
        cfg = cfg.with_overrides(serve_workers=parse_workers("--workers", processes))
    if transport == "stdio" and cfg.serve_workers > 1:
        raise ConfigError(
            "--workers (MCP_SERVE_WORKERS) is for --transport http; a stdio server is one "
            "process for one client: leave it at 1"
        )
    # The SDK loads only for `serve`.
    from mcp_warden.server import app, workers  # noqa: PLC0415

    try:
        if transport == "stdio":
            app.serve_stdio(cfg)
        elif cfg.serve_workers > 1:
            workers.serve_http(cfg, host=host, port=port)
        else:
            app.serve_http(cfg, host=host, port=port)
    except KeyboardInterrupt:
        sys.exit(130)
