"""The product's own server, `mcp-warden serve`: the Scavio tools behind a `Warden`.

It is built the way any user protects an `MCPServer` (see `warden.py`): the
server takes `warden.server_options()`, its tools are registered with
`warden.add_tools`, and it is served by `warden.run_http` (the layers of
`server/http.py`) or `warden.serve_stdio` (under MCP_TOKEN). What it adds is
the Scavio client the three tools share, opened and closed with the warden,
and the check at start-up that the credential store can be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server import MCPServer

from mcp_warden import __version__
from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError, WardenError
from mcp_warden.metrics.endpoint import process_endpoint
from mcp_warden.server.run import configure_logging
from mcp_warden.server.tools import ScavioClient, all_tools
from mcp_warden.warden import Warden

SERVER_NAME = "mcp-warden"
INSTRUCTIONS = (
    "Web search and page extraction through the Scavio Search API. "
    "This server lists only the tools your access token names."
)


def new_server(**options: Any) -> MCPServer[Any]:
    """An `MCPServer` named and described as this product, with `options`.

    The bench passes other options than `Warden.server_options` (none, or the
    SDK's authentication alone) to measure what each layer costs.
    """
    return MCPServer(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        **options,
    )


@dataclass
class Runtime:
    """A server process: the `Warden` and the Scavio client its tools share."""

    warden: Warden
    scavio: ScavioClient

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Open everything; ConfigError (or another WardenError) names what is missing."""
        warden = Warden.open(settings)
        try:
            warden.store  # noqa: B018  (the tools need the store: refuse to start without it)
            scavio = ScavioClient.from_settings(
                settings,
                lambda: warden.credential(settings.scavio_credential),
                timeout=settings.scavio_timeout,
            )
        except BaseException:
            warden.close()
            raise
        return cls(warden, scavio)

    def server(self, *, offload_verify: bool | None = None) -> MCPServer[Any]:
        """The protected Scavio server; its lifespan closes the client, then the warden.

        `offload_verify`: see `Warden.server_options` (the bench sets it to price the hop).
        """
        options = self.warden.server_options(lifespan=self._lifespan, offload_verify=offload_verify)
        server = new_server(**options)
        self.warden.add_tools(server, all_tools(self.scavio))
        return server

    @contextlib.asynccontextmanager
    async def _lifespan(self, _server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await self.scavio.aclose()

    async def aclose(self) -> None:
        """Close the client and the warden (again, harmlessly, after the server's lifespan)."""
        try:
            await self.scavio.aclose()
        finally:
            self.warden.close()


def open_runtime(settings: Settings) -> Runtime:
    """Runtime.open, with every startup failure as a ConfigError (exit 2)."""
    try:
        return Runtime.open(settings)
    except ConfigError:
        raise
    except WardenError as exc:
        raise ConfigError(f"cannot start: {exc}") from None


def serve_http(settings: Settings, *, host: str, port: int) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until SIGTERM or SIGINT.

    With MCP_METRICS_PORT set, Prometheus `/metrics` on its own address meanwhile.
    """
    configure_logging()
    runtime = open_runtime(settings)
    try:
        with process_endpoint(settings, public_port=port):
            runtime.warden.run_http(runtime.server(), host=host, port=port)
    finally:
        asyncio.run(runtime.aclose())


def check_http(settings: Settings, *, host: str) -> None:
    """Open what a server process opens and build its app, then close it: ConfigError if it
    cannot start (`serve --workers` checks once, in the parent, before starting workers)."""
    runtime = open_runtime(settings)
    try:
        runtime.warden.http_app(runtime.server(), host=host)
    finally:
        asyncio.run(runtime.aclose())


def serve_stdio(settings: Settings) -> None:
    """Serve MCP over stdin/stdout under the token in MCP_TOKEN; refuse to start without one."""
    configure_logging()
    anyio.run(_stdio, settings)


async def _stdio(settings: Settings) -> None:
    runtime = open_runtime(settings)
    try:
        await runtime.warden.serve_stdio(runtime.server())
    finally:
        await runtime.aclose()
