"""The root of every error mcp-warden raises on purpose.

Each error carries the exit code the CLI uses for it, and its message is one
line that says what is wrong and what to do. Messages never include a secret.
"""

from __future__ import annotations


class WardenError(Exception):
    """Base class: a failure the user can act on (exit code 1: a check failed)."""

    exit_code = 1


class ConfigError(WardenError):
    """A missing or malformed setting (exit code 2: usage or configuration)."""

    exit_code = 2
