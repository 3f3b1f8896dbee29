"""Every command of `mcp-warden` loads and documents itself.

The group imports subcommand modules lazily, so a missing or broken module
would otherwise only show when a user first runs that command. The help texts
are checked in-process (click's runner); one real process checks that every
lazily loaded module also imports in a fresh interpreter, where no test has
imported anything before it.
"""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner, Result

from mcp_warden.cli import _SUBCOMMANDS, cli
from mcp_warden.demo.harness import cli_env, run_process

LOAD_EVERY_COMMAND = """
import click
from mcp_warden.cli import _SUBCOMMANDS, cli
with click.Context(cli) as ctx:
    for name in sorted(_SUBCOMMANDS):
        print(name, cli.get_command(ctx, name).name)
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="mcp-warden")


def test_top_level_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.stderr
    listed = result.stdout.split("Commands:", 1)[1]
    for name in _SUBCOMMANDS:
        assert f"  {name} " in listed


@pytest.mark.parametrize("name", sorted(_SUBCOMMANDS))
def test_each_command_help_loads(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Usage: mcp-warden {name} ")
    assert result.exception is None


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.stderr


@pytest.mark.slow
def test_every_lazily_loaded_module_imports_in_a_fresh_process() -> None:
    done = run_process([sys.executable, "-c", LOAD_EVERY_COMMAND], cli_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{name} {name}" for name in sorted(_SUBCOMMANDS)]
