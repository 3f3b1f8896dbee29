"""Every command of `mcp-warden` loads and documents itself (real processes).

The group imports subcommand modules lazily, so a missing or broken module
would otherwise only show when a user first runs that command.
"""

from __future__ import annotations

import os

import pytest

from mcp_warden.cli import _SUBCOMMANDS
from mcp_warden.demo.harness import run_cli

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "SCAVIO_"))}


def test_top_level_help_lists_every_command() -> None:
    result = run_cli(["--help"], ENV)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Commands:", 1)[1]
    for name in _SUBCOMMANDS:
        assert f"  {name} " in listed


@pytest.mark.parametrize("name", sorted(_SUBCOMMANDS))
def test_each_command_help_loads(name: str) -> None:
    result = run_cli([name, "--help"], ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: mcp-warden {name} ")
    assert "internal error" not in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli(["frobnicate"], ENV)
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
