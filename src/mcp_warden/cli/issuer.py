"""`mcp-warden issuer serve`: the OAuth issuer service (client credentials, JWKS, revocation)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mcp_warden.cli import metrics_options, metrics_settings


@click.group()
def issuer() -> None:
    """The OAuth issuer service: MCP clients discover it and fetch their own tokens."""


@issuer.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=int, default=8443, show_default=True, help="TCP port (0: any free port)."
)
@click.option(
    "--certfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TLS certificate chain (PEM) for the host in MCP_TOKEN_ISSUER.",
)
@click.option(
    "--keyfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Its private key (PEM, mode 0600).",
)
@click.option(
    "--behind-tls-proxy",
    is_flag=True,
    help="Serve plain HTTP: a proxy in front terminates TLS at the https MCP_TOKEN_ISSUER.",
)
@metrics_options
@click.pass_context
def issuer_serve(  # noqa: PLR0917  (click passes the options positionally)
    ctx: click.Context,
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    behind_tls_proxy: bool,
    metrics_host: str | None,
    metrics_port: int | None,
) -> None:
    """Serve RFC 8414 metadata, the JWKS, the token and revocation endpoints at MCP_TOKEN_ISSUER.

    It holds the signing keys (MCP_KEYS_DIR); the MCP servers never do: they set
    MCP_JWKS to its jwks_uri. Clients are registered with `mcp-warden clients add`
    in MCP_CLIENTS_URL, which every issuer process shares. Prints
    `mcp-warden: issuer serving on URL` on stderr once it accepts connections.
    With a metrics port, it serves Prometheus /metrics there.
    """
    from mcp_warden.issuer.run import serve_issuer  # noqa: PLC0415  (uvicorn loads only here)

    try:
        serve_issuer(
            metrics_settings(ctx, metrics_host, metrics_port),
            host=host,
            port=port,
            certfile=certfile,
            keyfile=keyfile,
            behind_tls_proxy=behind_tls_proxy,
        )
    except KeyboardInterrupt:
        sys.exit(130)
