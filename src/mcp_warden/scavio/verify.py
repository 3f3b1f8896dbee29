"""`check_api_key`: ask Scavio whether a candidate key works, before it is stored.

`mcp-warden cred rotate --verify` calls it; it needs only this package (no
MCP SDK, no server), so the command stays quick to start.
"""

from __future__ import annotations

import asyncio

import httpx

from mcp_warden.config import Settings
from mcp_warden.errors import WardenError
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.scavio.keys import clean_key
from mcp_warden.scavio.retry import Sleep


class ApiKeyCheckError(WardenError):
    """A candidate API key that Scavio refused, or that could not be checked."""


async def check_api_key(
    settings: Settings,
    api_key: str,
    *,
    timeout: float | None = None,
    sleep: Sleep = asyncio.sleep,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Ask Scavio whether `api_key` works (a free `usage` call); ApiKeyCheckError if not.

    `timeout` defaults to the settings' (SCAVIO_TIMEOUT_SECONDS).
    """
    if clean_key(api_key) is None:
        raise ApiKeyCheckError(
            "the new value is not a usable Scavio key (printable ASCII without spaces expected)"
        )
    client = ScavioClient.from_settings(
        settings,
        lambda: api_key,
        timeout=settings.scavio_timeout if timeout is None else timeout,
        sleep=sleep,
        transport=transport,
    )
    async with client:
        try:
            await client.usage()
        except ScavioError as exc:
            if exc.reason == "rejected":
                raise ApiKeyCheckError(f"Scavio rejected the new key (HTTP {exc.status})") from None
            raise ApiKeyCheckError(f"could not verify the new key with Scavio: {exc}") from None
