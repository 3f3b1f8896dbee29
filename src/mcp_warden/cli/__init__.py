"""The `mcp-warden` command.

Subcommand groups live in their own modules and are imported only when used,
so `mcp-warden token verify` does not pay for importing the MCP SDK.

Exit codes: 0 success, 1 a check that failed, 2 a usage or configuration
error. Every error is one line on stderr; no traceback reaches the user unless
MCP_WARDEN_DEBUG=1.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from mcp_warden.config import Settings
from mcp_warden.errors import WardenError

# command name -> "module:attribute" of a click command or group
_SUBCOMMANDS = {
    "keygen": "mcp_warden.cli.cred:keygen",
    "cred": "mcp_warden.cli.cred:cred",
    "keys": "mcp_warden.cli.tokens:keys",
    "token": "mcp_warden.cli.tokens:token",
    "serve": "mcp_warden.cli.serve:serve",
    "issuer": "mcp_warden.cli.issuer:issuer",
    "clients": "mcp_warden.cli.clients:clients",
    "demo": "mcp_warden.demo.flow:demo",
}


class _LazyGroup(click.Group):
    """Import each subcommand's module on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WardenError as exc:
            fail(str(exc), exc.exit_code)


def fail(message: str, code: int) -> None:
    """Print one line to stderr and exit with `code`."""
    click.echo(f"mcp-warden: {message}", err=True)
    sys.exit(code)


def settings(ctx: click.Context) -> Settings:
    """The settings for this invocation, read from the environment once."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):
        obj = Settings.from_env()
        ctx.find_root().obj = obj
    return obj


F = TypeVar("F", bound=Callable[..., Any])


def metrics_options(command: F) -> F:
    """--metrics-host and --metrics-port, for the commands that serve Prometheus /metrics."""
    port = click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve Prometheus /metrics on this port, never the public one (0: any free "
        "port). Default: MCP_METRICS_PORT; unset, no metrics are served.",
    )
    host = click.option(
        "--metrics-host",
        default=None,
        help="Address /metrics binds to. Default: MCP_METRICS_HOST (127.0.0.1).",
    )
    return host(port(command))


def metrics_settings(ctx: click.Context, host: str | None, port: int | None) -> Settings:
    """The settings with the metrics flags, when given, over the environment's."""
    return settings(ctx).with_overrides(metrics_address=host, metrics_port=port)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcp-warden")
def cli() -> None:
    """Encrypted credentials, scoped tokens and per-tool enforcement for MCP servers."""


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="mcp-warden", standalone_mode=True)
    except Exception as exc:  # a bug, not a user error: say so without a traceback
        if os.environ.get("MCP_WARDEN_DEBUG") == "1":
            raise
        fail(
            f"internal error ({type(exc).__name__}); rerun with MCP_WARDEN_DEBUG=1 "
            "for the traceback and report it",
            1,
        )
