"""Checks on a finished `mcp-warden` process: it succeeded, or it failed with one error line."""

from __future__ import annotations

import subprocess


def succeeded(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The result, once its exit code is 0."""
    assert result.returncode == 0, result.stderr
    return result


def error_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """The one error line of a command that exited with `code`, checked for `parts`."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mcp-warden: "), lines[0]
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]
