"""What a caller may do, and the one decision every enforcement layer makes with it.

A `Grant` is what a verified token says: who (`sub`), which token (`jti`),
and the tool names it may list and call. `permits(grant, name)` is the only
authorization decision in the server; the HTTP layer, the SDK middleware and
the tool wrapper (see `guard`) all call it. It reads the grant and the
requested name, never the server's own tool list, so a tool that exists but
is not granted and a tool that does not exist are refused alike.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mcp_types import INVALID_PARAMS

SHOWN_NAME_CHARS = 128

TOOL_REFUSED_CODE = INVALID_PARAMS
"""JSON-RPC code of a refused `tools/call`: the MCP spec's code for an unknown tool."""


@dataclass(frozen=True, slots=True)
class Grant:
    """The caller's token, as far as enforcement and the audit log need it."""

    sub: str
    jti: str
    tools: Collection[str]


class Refusal(Exception):
    """The caller has no usable grant (any more); `reason` is a stable word for the audit log."""

    def __init__(self, reason: str, message: str, grant: Grant | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.grant = grant


def permits(grant: Grant, name: object) -> bool:
    """True when `grant` names the tool `name` (exact, case-sensitive; no wildcard)."""
    return isinstance(name, str) and name in grant.tools


def tool_refused_message(name: object) -> str:
    """The refusal text, the same whether the tool exists or not."""
    if not isinstance(name, str):
        return "tools/call needs a tool name; this token names the tools it may call"
    shown = name[:SHOWN_NAME_CHARS] + ("..." if len(name) > SHOWN_NAME_CHARS else "")
    return f"tool {shown!r} is not available with this token; use a token that names it"
