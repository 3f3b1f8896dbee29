"""mcp-warden: keep an MCP server safe when any one secret leaks.

The library's surface, for protecting your own MCP server:

    from mcp_warden import Warden

Each name below is imported on first use (module `__getattr__`), so that
`import mcp_warden` and the `mcp-warden` command stay fast: the MCP SDK, the
crypto and HTTP libraries load only when a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_HOMES = {
    "Warden": "mcp_warden.warden",
    "Settings": "mcp_warden.config",
    "WardenError": "mcp_warden.errors",
    "ConfigError": "mcp_warden.errors",
    "CredentialStore": "mcp_warden.credentials.store",
    "CredentialError": "mcp_warden.credentials.errors",
    "CredentialNotFound": "mcp_warden.credentials.errors",
    "Verifier": "mcp_warden.tokens.verifier",
    "Claims": "mcp_warden.tokens.claims",
    "TokenError": "mcp_warden.tokens.errors",
    "AuditLog": "mcp_warden.server.audit",
    "Grant": "mcp_warden.server.grants",
    "Refusal": "mcp_warden.server.grants",
    "permits": "mcp_warden.server.grants",
}

__all__ = [
    "AuditLog",
    "Claims",
    "ConfigError",
    "CredentialError",
    "CredentialNotFound",
    "CredentialStore",
    "Grant",
    "Refusal",
    "Settings",
    "TokenError",
    "Verifier",
    "Warden",
    "WardenError",
    "__version__",
    "permits",
]

if TYPE_CHECKING:
    from mcp_warden.config import Settings
    from mcp_warden.credentials.errors import CredentialError, CredentialNotFound
    from mcp_warden.credentials.store import CredentialStore
    from mcp_warden.errors import ConfigError, WardenError
    from mcp_warden.server.audit import AuditLog
    from mcp_warden.server.grants import Grant, Refusal, permits
    from mcp_warden.tokens.claims import Claims
    from mcp_warden.tokens.errors import TokenError
    from mcp_warden.tokens.verifier import Verifier
    from mcp_warden.warden import Warden


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mcp_warden' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
