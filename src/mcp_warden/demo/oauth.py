"""The demo's OAuth client: the official `mcp` Python client fetching its own tokens.

`ClientCredentialsOAuthProvider` (the SDK's machine-to-machine client)
starts with no token. The server's first 401 names its RFC 9728 metadata,
which names the issuer; the client reads the issuer's RFC 8414 metadata and
asks its token endpoint for a token (client_secret_basic). When the server
answers a call with 403 `insufficient_scope` naming a tool, the SDK asks the
issuer again for its scopes and that tool, and retries the call once.

`Session` keeps one MCP session open across several calls and notes every
HTTP exchange the client makes (method, where, the MCP method, status, and
the scope a token request asked for and was granted; never a token, a
secret or anything else of a body), so the demo can show the discovery and each step-up as they
happened.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import httpx2
    from mcp import Client
    from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
    from mcp_types import CallToolResult


class MemoryTokens:
    """The SDK's `TokenStorage`, in memory: the client starts with no token."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.info = client_info


@dataclass
class Session:
    """One MCP client session with its own tokens, and the exchanges it made."""

    client: Client
    exchanges: list[str] = field(default_factory=list)

    def take(self) -> list[str]:
        """The exchanges since the last call, oldest first."""
        taken, self.exchanges[:] = list(self.exchanges), []
        return taken

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        return await self.client.call_tool(tool, arguments)


@contextlib.asynccontextmanager
async def session(
    url: str, *, issuer: str, client_id: str, client_secret: str
) -> AsyncIterator[Session]:
    """An MCP session to `url` whose tokens the client fetches itself from `issuer`."""
    import httpx2  # noqa: PLC0415  (the SDK loads on first use, as in harness.mcp_http)
    from mcp import Client  # noqa: PLC0415
    from mcp.client.auth.extensions.client_credentials import (  # noqa: PLC0415
        ClientCredentialsOAuthProvider,
    )
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryTokens(),
        client_id=client_id,
        client_secret=client_secret,
        issuer=issuer,  # its credentials go to this issuer only, whatever a server names
    )
    exchanges: list[str] = []

    async def note(response: httpx2.Response) -> None:
        request = response.request
        line = f"{exchange(request.method, str(request.url), url)} -> {response.status_code}"
        method = request.headers.get("mcp-method")
        if method:
            line = line.replace(" -> ", f" ({method}) -> ", 1)
        elif request.url.path.endswith("/token") and response.status_code == 200:
            asked = parse_qs(request.content.decode()).get("scope", ["(none)"])[0]
            await response.aread()  # the SDK reads it next; only the granted scope is shown
            line += f", scope asked: {asked}; granted: {response.json().get('scope')}"
        exchanges.append(line)

    async with (
        httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"response": [note]}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield Session(client, exchanges)


def exchange(method: str, where: str, server: str) -> str:
    """`POST /mcp` on the MCP server; `GET http://issuer/.well-known/...` anywhere else."""
    parts = urlsplit(where)
    same = parts.netloc == urlsplit(server).netloc
    return f"{method} {parts.path if same else f'{parts.scheme}://{parts.netloc}{parts.path}'}"
