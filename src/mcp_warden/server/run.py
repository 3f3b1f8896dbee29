"""Serving a protected server: the socket, uvicorn and the start-up log, for any `Warden` user.

Start-up failures are ConfigErrors with a one-line message, which the CLI
turns into exit code 2.

HTTP: the socket is bound here (so port 0 works and the bound address is
printed only once it accepts), with `proto=IPPROTO_TCP` so that asyncio
sets TCP_NODELAY on accepted connections (without it every keep-alive
response waits ~40 ms for a delayed ACK). uvicorn runs with its access log
off, on uvloop and httptools where installed; SIGTERM and SIGINT drain
in-flight requests (up to `GRACEFUL_SECONDS`), then the SDK lifespan closes
the warden.

The garbage collector is set for a server once it has started (`settle_heap`):
what start-up built (the SDK, pydantic's schemas, the app: over a hundred
thousand objects) is frozen out of its reach, so a full collection no longer
walks it, and the youngest generation is collected after `GC_YOUNG` new
objects instead of Python's 700, so the objects of the requests in flight
are not promoted (and later walked) at every collection.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.types import ASGIApp

from mcp_warden.errors import ConfigError
from mcp_warden.server.http import MCP_PATH
from mcp_warden.urls import redacted

GRACEFUL_SECONDS = 10
BACKLOG = 1024
BANNER = "mcp-warden: serving on "
GC_YOUNG = 20_000
"""New objects between two collections of the youngest generation (Python's default: 700)."""

log = logging.getLogger("mcp_warden.server")


def configure_logging() -> None:
    """Warnings and errors on stderr, one line each (stdout belongs to the stdio protocol)."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="mcp-warden: %(levelname)s %(message)s"
    )


def serve(app: ASGIApp, sock: socket.socket, *, host: str, audience: str) -> None:
    """Serve `app` on the bound `sock`; announce its URL, and warn if it is not `audience`."""
    run_uvicorn(app, sock, banner=banner_for(sock, host=host, audience=audience))


def banner_for(sock: socket.socket, *, host: str, audience: str) -> str:
    """The line announcing the URL `sock` serves, after warning once if it is not `audience`."""
    bound_port = int(sock.getsockname()[1])
    warn_if_not_audience(audience, host, bound_port)
    return f"{BANNER}http://{_host_in_url(host)}:{bound_port}{MCP_PATH}"


def run_uvicorn(app: ASGIApp, sock: socket.socket, *, banner: str, **options: Any) -> None:
    """Serve `app` on the bound `sock` until SIGTERM/SIGINT; print `banner` once it accepts.

    `options` go to `uvicorn.Config` as they are (the issuer's TLS certificate and key;
    `loop` and `http` replace the defaults).
    """
    _Server(uvicorn_config(app, **options), banner=banner).run(sockets=[sock])


def uvicorn_config(app: ASGIApp | Callable[[], ASGIApp], **options: Any) -> uvicorn.Config:
    """uvicorn's settings for every server here: one process (`run_uvicorn`) or several.

    `app` is the app, or (with `factory=True` in `options`) what each worker calls to
    build its own; `workers` defaults to 1, so WEB_CONCURRENCY in the environment is
    never read.
    """
    return uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        # uvloop's event loop and httptools' HTTP/1.1 parser when they are installed (they
        # are dependencies, but not on every platform), else asyncio's and h11: "auto"
        # is uvicorn's own choice with that fallback (tests/server/test_event_loop.py).
        **{"workers": 1, "loop": "auto", "http": "auto", **options},
    )


class _Server(uvicorn.Server):
    """uvicorn, announcing the URL once the app has started and the socket accepts."""

    def __init__(self, config: uvicorn.Config, *, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settle_heap()
        if not self.should_exit:
            print(self._banner, file=sys.stderr, flush=True)


def settle_heap() -> None:
    """Freeze what start-up built out of the collector's reach; collect the young less often.

    Called once a server process has built its app (see the module docstring).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port); ConfigError if impossible."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (0-65535; 0 picks a free one)")
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "(0 picks a free one)"
        ) from None
    return sock


def warn_if_not_audience(audience: str, host: str, port: int) -> None:
    """Warn once when clients cannot reach this server at the URL its tokens name."""
    parts = urlsplit(audience)
    try:
        audience_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        audience_port = None
    wildcard = host in ("0.0.0.0", "::", "")  # noqa: S104  (comparing, not binding)
    same_host = wildcard or parts.hostname == host.strip("[]")
    if same_host and audience_port == port and parts.path == MCP_PATH:
        return
    log.warning(
        "MCP_TOKEN_AUDIENCE is %s but this server listens on %s:%d%s; tokens name the "
        "audience, so clients must use that URL (through a proxy or load balancer), or set "
        "MCP_TOKEN_AUDIENCE to the URL clients use",
        redacted(audience),
        host,
        port,
        MCP_PATH,
    )


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
