"""`/metrics` on its own address (MCP_METRICS_HOST:MCP_METRICS_PORT), never on the public one.

One process (`serve`, `issuer serve`): `process_endpoint` starts
prometheus_client's own HTTP server (`start_http_server`: a small threaded
WSGI server in a daemon thread) on this process's default registry, which
also carries the library's process and platform collectors. A thread and
not a second uvicorn server in the event loop: a scrape never waits behind
the requests the loop is serving, nor they behind a scrape, and the
library's server needs no part of the public server's set-up.

Several workers (`serve --workers N`): prometheus_client's multiprocess
mode. The supervisor, before it spawns any worker:

    with parent_endpoint(settings, public_port=port) as parent:   # None: metrics off
        ... spawn the workers (they inherit PROMETHEUS_MULTIPROC_DIR) ...
        parent.worker_exited(pid)                                  # for each dead worker

`parent_endpoint` makes a fresh private directory (0700, `tempfile.mkdtemp`),
sets PROMETHEUS_MULTIPROC_DIR to it in this environment, which spawned
workers inherit (each must import prometheus_client only after that, as a
spawned interpreter does), and serves `/metrics` from the parent with a
`MultiProcessCollector` over it: counters and histograms summed over every
worker that ever ran, gauges from the live ones (see `catalog`). A dead
worker's gauges leave with `worker_exited` (`mark_process_dead`); the
directory is removed when the block ends. Workers never serve `/metrics`
themselves (they never enter `process_endpoint`). The supervisor's own
values stay in its memory, out of the sums: prometheus_client picks its
value class when first imported, which this module's import did before the
variable was set. The same steps are available one by one
(`prepare_multiprocess_dir`, `serve_in_parent`, `worker_exited`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
BANNER = "mcp-warden: metrics on "
METRICS_PATH = "/metrics"


@dataclass
class MetricsEndpoint:
    """A running `/metrics` server (prometheus_client's, in a daemon thread)."""

    server: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{METRICS_PATH}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_registry(host: str, port: int, registry: Collector) -> MetricsEndpoint:
    """Serve `registry` on host:port (0: any free port); ConfigError when it cannot listen."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {getattr(exc, 'strerror', None) or exc}; "
            "choose another --metrics-port (0 picks a free one) or --metrics-host"
        ) from None
    return MetricsEndpoint(server, thread, host)


def prepare_multiprocess_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    """A fresh private directory (0700) for the workers' metrics, named in `environ`."""
    directory = Path(tempfile.mkdtemp(prefix="mcp-warden-metrics-"))
    environ[MULTIPROC_DIR] = str(directory)
    return directory


def serve_in_parent(host: str, port: int, directory: Path) -> MetricsEndpoint:
    """Serve every worker's metrics in `directory`, aggregated, on host:port."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return serve_registry(host, port, registry)


def worker_exited(pid: int, directory: Path) -> None:
    """Drop the gauges of the dead worker `pid` (its counters keep counting in the sums)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def process_endpoint(
    settings: Settings, *, public_port: int
) -> contextlib.AbstractContextManager[MetricsEndpoint | None]:
    """This process's `/metrics` while the block runs; None when MCP_METRICS_PORT is unset."""
    return _serving(settings, public_port, lambda host, port: serve_registry(host, port, REGISTRY))


@dataclass
class ParentMetrics:
    """The supervisor's `/metrics` over its workers' directory."""

    endpoint: MetricsEndpoint
    directory: Path

    def worker_exited(self, pid: int) -> None:
        worker_exited(pid, self.directory)


@contextlib.contextmanager
def parent_endpoint(settings: Settings, *, public_port: int) -> Iterator[ParentMetrics | None]:
    """The workers' aggregated `/metrics` (see the module docstring); None when off."""
    if settings.metrics_port is None:
        yield None
        return
    directory = prepare_multiprocess_dir()
    try:
        serve = functools.partial(serve_in_parent, directory=directory)
        with _serving(settings, public_port, serve) as endpoint:
            yield ParentMetrics(endpoint, directory) if endpoint is not None else None
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _serving(
    settings: Settings, public_port: int, serve: Callable[[str, int], MetricsEndpoint]
) -> Iterator[MetricsEndpoint | None]:
    """`serve(host, port)` on the metrics address, announced, closed after; None when off."""
    port = settings.metrics_port
    if port is None:
        yield None
        return
    if port == public_port != 0:
        raise ConfigError(
            f"--metrics-port {port} is the public port; metrics are served on their own "
            "address only: choose another --metrics-port"
        )
    endpoint = serve(settings.metrics_address, port)
    print(BANNER + endpoint.url, file=sys.stderr, flush=True)
    try:
        yield endpoint
    finally:
        endpoint.close()
