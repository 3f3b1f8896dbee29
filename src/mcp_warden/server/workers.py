"""`serve --workers N`: N processes accepting on one port, under uvicorn's own supervisor.

uvicorn's `Multiprocess` is the well-kept supervisor of the server we already
run, so we use it rather than our own: the parent binds the socket once
(`run.bind`) and hands it to each worker; it restarts a worker that dies; on
SIGTERM or SIGINT it sends SIGTERM to every worker, each of which drains its
requests (`run.GRACEFUL_SECONDS`), and waits for all.

Workers are spawned, not forked: each unpickles its `uvicorn.Config`, whose
app is a `WorkerApp`, and builds its own server from the environment. So each
has its own verifier cache, denylist sync and upstream connection pool, and
reads the secrets itself from their `_FILE` or systemd credential: nothing
secret is handed from the parent. A worker imports this module before it can
answer the supervisor's health check, so the module stays light and the
server is imported when the worker builds its app.

What `Supervisor` adds to uvicorn's: the banner, printed once every worker
accepts; a WARNING for each worker that dies (uvicorn logs it at INFO); the
parent's copy of the socket closed when it stops, so new connections are
refused while the workers drain; and exit status 2 when a worker cannot start.
The parent checks the settings first by opening what a worker opens, so a bad
setting is one line and exit 2 before any worker starts.

Metrics (MCP_METRICS_PORT): prometheus_client's multiprocess mode. The parent
makes the workers' shared directory before the supervisor spawns any worker,
serves `/metrics` summed over them, and drops a dead worker's gauges in
`Supervisor.worker_died` (see `mcp_warden.metrics.endpoint`).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError, WardenError

HEALTHCHECK_SECONDS = 10
"""A worker that answers no health check within this is killed and replaced.

Longer than uvicorn's 5 s: a spawned worker answers only once its interpreter
has started and unpickled its settings, which a busy host can slow down.
"""

log = logging.getLogger("mcp_warden.server")


@dataclass(frozen=True)
class WorkerApp:
    """What a worker calls to build its app (uvicorn's `factory`): picklable, no secret in it."""

    host: str

    def __call__(self) -> ASGIApp:
        from mcp_warden.server import app, run  # noqa: PLC0415  (see the module's docstring)

        run.configure_logging()
        try:
            runtime = app.open_runtime(Settings.from_env())
            served = runtime.warden.http_app(runtime.server(), host=self.host)
        except WardenError as exc:
            log.error("a worker could not start: %s", exc)  # noqa: TRY400  (one line, no trace)
        except Exception as exc:  # a bug: one line, and no restart loop
            log.error(  # noqa: TRY400
                "a worker could not start: internal error (%s); run `mcp-warden serve "
                "--workers 1` with MCP_WARDEN_DEBUG=1 for the traceback and report it",
                type(exc).__name__,
            )
        else:
            run.settle_heap()
            return served
        sys.exit(STARTUP_FAILURE)  # uvicorn's code for "do not restart me": the parent stops


def serve_http(settings: Settings, *, host: str, port: int) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp with `settings.serve_workers` processes."""
    from mcp_warden.metrics.endpoint import parent_endpoint  # noqa: PLC0415  (as below)
    from mcp_warden.server import app, run  # noqa: PLC0415  (see the module's docstring)

    if settings.revocation_url == "memory://":
        raise ConfigError(
            "MCP_REVOCATION_URL=memory:// lives in one process: each of the "
            f"{settings.serve_workers} workers would keep its own denylist and DPoP replay "
            "cache; use sqlite:///path (one host) or redis://host:port/db"
        )
    run.configure_logging()
    app.check_http(settings, host=host)
    sock = run.bind(host, port)
    try:
        config = run.uvicorn_config(
            WorkerApp(host),
            factory=True,
            workers=settings.serve_workers,
            timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
        )
        banner = run.banner_for(sock, host=host, audience=settings.token_audience)
        with parent_endpoint(settings, public_port=sock.getsockname()[1]) as metrics:
            supervisor = Supervisor(
                config, sock, banner=banner, on_death=metrics.worker_exited if metrics else None
            )
            supervisor.run()
    finally:
        sock.close()
    if supervisor.failed_start:
        raise ConfigError("a worker could not start (its error is above); fix it and start again")


class Supervisor(Multiprocess):
    """uvicorn's supervisor, announcing when every worker accepts and warning when one dies."""

    def __init__(
        self,
        config: Config,
        sock: socket.socket,
        *,
        banner: str,
        on_death: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(config, sockets=[sock])
        self._banner = banner
        self._on_death = on_death
        self._announced = False
        self.failed_start = False

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        for index, process in enumerate(before):
            code = process.exitcode
            if code == STARTUP_FAILURE:
                self.failed_start = True  # uvicorn has stopped: no replacement
            elif code is not None and self.processes[index] is not process:
                self.worker_died(process, code, replacement=self.processes[index])
        if not (self._announced or self.should_exit.is_set()) and all(
            p.is_ready(self.config.timeout_worker_healthcheck) for p in self.processes
        ):
            print(self._banner, file=sys.stderr, flush=True)
            self._announced = True

    def worker_died(self, process: Process, code: int, *, replacement: Process) -> None:
        """A worker ended while serving (or hung and was killed); `replacement` has started."""
        log.warning(
            "worker %s died (%s); worker %s replaces it",
            process.pid,
            _how(code),
            replacement.pid,
        )
        if self._on_death is not None and process.pid is not None:
            self._on_death(process.pid)

    def terminate_all(self) -> None:
        for sock in self.sockets:  # refuse new connections while the workers drain
            sock.close()
        super().terminate_all()


def _how(code: int) -> str:
    """A process's exit code as people read it: a signal's name for a negative one."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
