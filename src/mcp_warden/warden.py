"""`Warden`: the security runtime a protected MCP server holds, without any tool of its own.

One object per server process, opened once from `Settings` and closed once:
the token verifier (JWKS, claims, cache), the revocation denylist (synced
from the shared store), the audit log (stderr by default) and, on first use,
the credential store (only a server that loads upstream credentials needs
MCP_ENCRYPTION_KEY). The product's own Scavio server (`server/app.py`) is a
user of it, like anyone's `MCPServer` or FastMCP server.

Protecting an `mcp` SDK `MCPServer`:

    warden = Warden.open()                                  # settings from the environment
    server = MCPServer("mine", **warden.server_options())   # verifier, auth, ToolGuard
    @warden.tool(server)                                    # a guarded tool
    async def add(a: int, b: int) -> int: ...
    warden.run_http(server, port=8000)                      # or warden.http_app(server)
    warden.run_stdio(server)                                # or, under MCP_TOKEN, on stdio

A token then lists and calls only the tools it names (403 insufficient_scope
over HTTP for any other), every call writes an audit line, and a revoked or
expired token is refused (401) on its next request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.caching import CacheHint
from starlette.types import ASGIApp

from mcp_warden.config import Settings
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.errors import ConfigError
from mcp_warden.metrics import catalog as metrics
from mcp_warden.server import run
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import TokenVerifierAdapter, auth_settings
from mcp_warden.server.dpop import DpopLayer
from mcp_warden.server.grants import Grants
from mcp_warden.server.guard import ToolGuard, guarded
from mcp_warden.server.http import protected_app
from mcp_warden.tokens.dpop_nonce import NonceSource
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.replay import ReplayCache, open_replay_cache
from mcp_warden.tokens.revocation import Denylist, open_denylist
from mcp_warden.tokens.verifier import Verifier

if TYPE_CHECKING:
    from mcp_warden.server.tools.base import ToolSpec

F = TypeVar("F", bound=Callable[..., Any])
Lifespan = Callable[[MCPServer[Any]], AbstractAsyncContextManager[Any]]

NOT_PROTECTED = (
    "this server was not built with this warden's options; build it as "
    "MCPServer(name, **warden.server_options())"
)


class Warden:
    """The verifier, denylist, audit log and credential store of one server process."""

    def __init__(
        self,
        settings: Settings,
        *,
        verifier: Verifier,
        denylist: Denylist,
        audit: AuditLog,
        store: CredentialStore | None = None,
    ) -> None:
        """Prefer `Warden.open(settings)`; this form takes parts built elsewhere (tests)."""
        self.settings = settings
        self.verifier = verifier
        self.denylist = denylist
        self.audit = audit
        self._store = store
        self._store_lock = threading.Lock()
        self._grants = Grants()
        self._guard = ToolGuard(self._grants, audit)
        self._closed = False
        self._replay: ReplayCache | None = None

    @classmethod
    def open(cls, settings: Settings | None = None) -> Warden:
        """Open every part from `settings` (default: the environment).

        Raises ConfigError (or another WardenError) naming what is missing; on
        failure, what was already opened is closed again.
        """
        settings = Settings.from_env() if settings is None else settings
        with contextlib.ExitStack() as undo:
            denylist = open_denylist(settings)
            undo.callback(denylist.close)
            verifier = Verifier.from_settings(settings, denylist)
            undo.callback(verifier.close)
            audit = AuditLog.open(settings.audit_log)
            undo.pop_all()
        return cls(settings, verifier=verifier, denylist=denylist, audit=audit)

    @property
    def store(self) -> CredentialStore:
        """The credential store, opened on first use (ConfigError without MCP_ENCRYPTION_KEY)."""
        with self._store_lock:
            if self._store is None:
                self._store = CredentialStore.from_settings(self.settings)
            return self._store

    def credential(self, name: str) -> str:
        """The plaintext of credential `name`, loaded just-in-time for one upstream call.

        Keep it in a local variable for that call only; the store keeps no plaintext.
        """
        try:
            return self.store.load(name)
        except Exception as exc:
            metrics.credential_load_failed(exc)
            raise

    # -- an `mcp` SDK MCPServer ------------------------------------------------------

    def server_options(
        self, *, lifespan: Lifespan | None = None, offload_verify: bool | None = None
    ) -> dict[str, Any]:
        """The keyword arguments that protect `MCPServer(name, **warden.server_options())`.

        - `middleware`: `ToolGuard`, which filters `tools/list` to the token's
          tools, refuses any other `tools/call` before it runs, and writes the
          audit line of each call;
        - `token_verifier` and `auth`: bearer tokens checked by our verifier
          through the SDK's hook, for the resource MCP_TOKEN_AUDIENCE (left out
          when that is not an http(s) URL: stdio needs neither, and `http_app`
          then says what to fix);
        - `cache_hints`: `tools/list` private, since it depends on the token;
        - `lifespan`: closes this warden when the server stops (yours, if
          given, runs inside it).

        `offload_verify`: verify tokens in a worker thread; by default only when
        MCP_JWKS is a URL, whose fetch can block (see `server/auth.py`).
        """
        options: dict[str, Any] = {
            "middleware": [self._guard],
            "cache_hints": {"tools/list": CacheHint(ttl_ms=0, scope="private")},
            "lifespan": self._lifespan(lifespan),
        }
        try:
            options["auth"] = auth_settings(self.settings)
        except ConfigError:
            return options  # stdio needs no HTTP auth; http_app raises this error
        offload = "://" in self.settings.jwks if offload_verify is None else offload_verify
        options["token_verifier"] = TokenVerifierAdapter(
            self.verifier, offload=offload, require_dpop=self.settings.require_dpop
        )
        return options

    def tool(
        self,
        server: MCPServer[Any],
        name: str | None = None,
        *,
        description: str | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Decorator: register the function as a tool of `server` that only a grant naming it runs.

        As `server.tool()`: the name defaults to the function's, the description
        to its docstring, and `options` (title, annotations, structured_output...)
        go to `server.add_tool`. Register tools this way rather than with
        `server.tool()`: `ToolGuard` refuses unnamed tools either way, but only a
        guarded tool tells the audit line why it failed.
        """

        def register(fn: F) -> F:
            tool_name = name or fn.__name__
            metrics.register_tool(tool_name)
            server.add_tool(
                guarded(tool_name, fn), name=tool_name, description=description, **options
            )
            return fn

        return register

    def add_tools(self, server: MCPServer[Any], specs: Iterable[ToolSpec]) -> None:
        """Register `ToolSpec`s (name, description, function, annotations) as guarded tools."""
        for spec in specs:
            self.tool(
                server,
                spec.name,
                description=spec.description,
                annotations=spec.annotations,
                structured_output=True,
            )(spec.fn)

    def http_app(self, server: MCPServer[Any], *, host: str = "127.0.0.1") -> ASGIApp:
        """The stateless streamable-HTTP ASGI app at /mcp, with /healthz, to serve on `host`.

        Around the SDK's app: the 503 concurrency limit, 405 for all but POST,
        the 401 that names the failed check, 403 insufficient_scope, 413 and
        400 for oversized bodies and batches (see `server/http.py`).
        """
        self._check_protected(server)
        if server.settings.auth is None:
            auth_settings(self.settings)  # raises the ConfigError that made server_options skip it
            raise ConfigError(NOT_PROTECTED)
        nonces = NonceSource.from_settings(self.settings)
        replay = self._replay_cache()

        def dpop(app: ASGIApp) -> ASGIApp:
            return DpopLayer(
                app,
                settings=self.settings,
                verifier=self.verifier,
                replay=replay,
                audit=self.audit,
                nonces=nonces,
            )

        return protected_app(
            server,
            settings=self.settings,
            denylist=self.denylist,
            audit=self.audit,
            host=host,
            dpop=dpop,
        )

    def _replay_cache(self) -> ReplayCache:
        """The DPoP replay cache in MCP_REVOCATION_URL's store, opened once (closed by close)."""
        if self._replay is None:
            self._replay = open_replay_cache(self.settings)
        return self._replay

    def run_http(
        self, server: MCPServer[Any], *, host: str = "127.0.0.1", port: int = 8000
    ) -> None:
        """Serve `http_app(server)` on host:port (0: any free port) until SIGTERM or SIGINT.

        Prints `mcp-warden: serving on http://HOST:PORT/mcp` on stderr once it
        accepts connections; ConfigError when it cannot listen.
        """
        sock = run.bind(host, port)
        try:
            app = self.http_app(server, host=host)
        except BaseException:
            sock.close()
            raise
        run.serve(app, sock, host=host, audience=self.settings.token_audience)

    async def serve_stdio(self, server: MCPServer[Any]) -> None:
        """Serve `server` on stdin/stdout under the token in MCP_TOKEN.

        Refuses to start (ConfigError) without a valid token; afterwards the
        token is re-checked (expiry, signing key, revocation) on every request.
        """
        self._check_protected(server)
        token = self.settings.token
        if token is None:
            raise ConfigError(
                "MCP_TOKEN is not set; a stdio server runs under one token: mint one with "
                "`mcp-warden token mint --tools ... --ttl ... --sub ...` and export it as MCP_TOKEN"
            )
        try:
            claims = self.verifier.verify(token.strip())
        except TokenError as exc:
            raise ConfigError(
                f"MCP_TOKEN was refused ({exc.reason}: {exc}); mint a new token with "
                "`mcp-warden token mint` and export it as MCP_TOKEN"
            ) from None
        if claims.cnf_jkt is not None:
            raise ConfigError(
                "MCP_TOKEN is bound to a DPoP key (cnf.jkt), and stdio carries no DPoP proofs; "
                "mint an unbound token for a stdio server"
            )
        self._grants.run_under(self.verifier, claims)
        await server.run_stdio_async()

    def run_stdio(self, server: MCPServer[Any]) -> None:
        """`serve_stdio` in a new event loop, until the client closes stdin."""
        anyio.run(self.serve_stdio, server)

    def _check_protected(self, server: MCPServer[Any]) -> None:
        if self._guard not in server.middleware:
            raise ConfigError(NOT_PROTECTED)

    def _lifespan(self, inner: Lifespan | None) -> Lifespan:
        @contextlib.asynccontextmanager
        async def lifespan(server: MCPServer[Any]) -> AsyncIterator[Any]:
            try:
                if inner is None:
                    yield {}
                else:
                    async with inner(server) as state:
                        yield state
            finally:
                self.close()

        return lifespan

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the denylist sync and release the JWKS source and the audit log (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.verifier.close()
        finally:
            try:
                self.denylist.close()
            finally:
                try:
                    if self._replay is not None:
                        self._replay.close()
                finally:
                    self.audit.close()

    def __enter__(self) -> Warden:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
