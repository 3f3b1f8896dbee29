"""The real `haproxy` running deploy/haproxy.cfg, unchanged, in front of the replica tests.

(A second file sets `nbthread 1`, so that no access-log line is dropped: see below.)

with haproxy_process(workdir, ["127.0.0.1:PORT1", ...]) as lb:   # the replicas' addresses
    lb.url                          # http://127.0.0.1:PORT/mcp, what clients call
    lb.wait_up(0)                   # replica 0's server is UP in `show stat` (runtime API)
    with lb.only([1]): ...          # every other replica drained: all traffic to replica 1
    lb.route(request_id)            # the access-log line of the request with that X-Request-ID
    lb.counters(0)                  # replica 0's `show stat` counters (requests, answers...)
    lb.changes()                    # the log's "Server mcp_replicas/replicaN is UP|DOWN" lines

The file's addresses come from environment variables (see its header): this
module sets them to a free 127.0.0.1 port, the replicas' ports, a stats socket
in a short temporary directory (a Unix socket path is limited to 107 bytes)
and no user switch. HAProxy runs in the foreground (`-db`), its log (stdout,
ISO timestamps) and its notices (stderr) in one file.

Which replica answered a call is read from that access log, by the
X-Request-ID each client call carries (the file captures it), not from a
response header, which a call cut short never gets. One kind of call is in
neither: when a replica dies during a request that is not the first on its
client connection, HAProxy closes that connection without an answer and
without a log line (so that the client may retry); the replica's `eresp`
counter counts it.

The runtime API client is a few lines over a Unix socket, written here: one
command per connection, as HAProxy's non-interactive mode expects.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcp_warden.demo.harness import background, free_port, run_process
from tests.support.procs import REPO, required
from tests.support.waiting import eventually

CONFIG = REPO / "deploy" / "haproxy.cfg"
BACKEND = "mcp_replicas"
SLOTS = 3
"""Replica slots in deploy/haproxy.cfg (MCP_HAPROXY_REPLICA_1..3; the third may be empty)."""

_SERVER = re.compile(r"replica(\d+)(_backup)?")
_ACCESS = re.compile(
    rf"(?P<time>\S+) \S+ \[[^]]*\] \S+ {BACKEND}/(?P<server>\S+) \S+ "
    r"(?P<status>-?\d+) \S+ \S+ \S+ (?P<termination>\S+) \S+?/(?P<retries>\+?\d+) \S+ "
    r"\{(?P<request_id>[^}]*)\}\s+\"(?P<request>[^\"]*)\""
)
_CHANGE = re.compile(
    rf"(?P<time>\S+) Server {BACKEND}/(?P<server>\S+) is (?P<state>UP|DOWN), reason: (?P<why>.*)"
)


def haproxy_binary() -> str:
    """haproxy's path, or skip (fail in CI, where MCP_WARDEN_REQUIRE_HAPROXY=1)."""
    reason = "haproxy not installed (apt-get install haproxy; .ci/run does it)"
    return required(shutil.which("haproxy"), reason, "MCP_WARDEN_REQUIRE_HAPROXY")


def config_env(
    *, bind: str, replicas: Sequence[str], stats_socket: Path, **more: str
) -> dict[str, str]:
    """The environment deploy/haproxy.cfg reads (and nothing of ours beyond PATH)."""
    if not 2 <= len(replicas) <= SLOTS:
        raise ValueError(f"deploy/haproxy.cfg has {SLOTS} replica slots, 2 of them required")
    slots = [*replicas, *[""] * (SLOTS - len(replicas))]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MCP_HAPROXY_BIND": bind,
        "MCP_HAPROXY_STATS_SOCKET": str(stats_socket),
        "MCP_HAPROXY_USER": "",
        **more,
    }
    env |= {f"MCP_HAPROXY_REPLICA_{n}": address for n, address in enumerate(slots, 1)}
    return env


def check_config(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`haproxy -c -f deploy/haproxy.cfg` with `env`: the file as HAProxy parses it."""
    return run_process([haproxy_binary(), "-c", "-f", str(CONFIG)], env)


def server_name(index: int, *, backup: bool = False) -> str:
    """The file's name for replica `index` (0-based), or for its unchecked backup entry."""
    return f"replica{index + 1}" + ("_backup" if backup else "")


def replica_index(server: str) -> int | None:
    """The replica (0-based) a server name of the file stands for; None for <NOSRV>."""
    match = _SERVER.fullmatch(server)
    return None if match is None else int(match[1]) - 1


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True)
class Route:
    """One access-log line: where HAProxy sent a request and how it ended."""

    request_id: str  # the client's X-Request-ID ("" without one)
    request: str  # "POST /mcp HTTP/1.1"
    time: float  # when HAProxy logged it (the end of the request)
    server: str  # "replica2", "replica2_backup", "<NOSRV>"
    status: int  # what HAProxy sent the client (-1: nothing)
    termination: str  # HAProxy's termination state, "----" when nothing went wrong
    retries: int  # connection retries
    redispatched: bool  # a retry went to another server than the first one chosen

    @property
    def replica(self) -> int | None:
        return replica_index(self.server)


@dataclass(frozen=True)
class Change:
    """A health-check transition of one server, as HAProxy logged it."""

    time: float
    server: str
    state: str  # "UP" or "DOWN"
    why: str  # HAProxy's words: 'Layer7 wrong status, code: 503, ...'

    @property
    def replica(self) -> int | None:
        return replica_index(self.server)


class HAProxy:
    """A running haproxy (see the module docstring)."""

    def __init__(self, port: int, replicas: int, stats_socket: Path, log: Path) -> None:
        self.port = port
        self.replicas = replicas
        self.stats_socket = stats_socket
        self.log = log
        self._read = 0  # bytes of the log parsed so far (whole lines only)
        self._requests: list[Route] = []
        self._by_id: dict[str, Route] = {}
        self._changes: list[Change] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One runtime API command over the stats socket; its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stat(self) -> dict[str, dict[str, str]]:
        """`show stat` for each server of the backend: column -> value ("status": "UP", ...)."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").removeprefix("# ")))
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def states(self) -> dict[str, str]:
        """Each server -> its status ("UP", "DOWN", "UP 1/3" going down, "DRAIN", ...)."""
        return {server: row["status"] for server, row in self.stat().items()}

    def counters(self, index: int) -> dict[str, int]:
        """Replica `index`'s counters (its server entry only): requests sent to it (`stot`),
        answers by class (`hrsp_2xx`...), requests that got no answer from it (`eresp`, which
        also counts those HAProxy dropped unlogged), refused connections (`econ`), requests
        moved to another replica (`wredis`)."""
        row = self.stat()[server_name(index)]
        return {key: int(value) for key, value in row.items() if value.isdigit()}

    def wait_up(self, index: int, timeout: float = 30.0) -> None:
        """Until replica `index` passes its health checks (status UP, not going down)."""
        name = server_name(index)
        eventually(
            lambda: self.states().get(name) == "UP", timeout, f"HAProxy: {name} UP", poll=0.05
        )

    def set_state(self, index: int, state: str) -> None:
        """`set server ... state ready|drain|maint` for replica `index` and its backup entry."""
        for backup in (False, True):
            answer = self.command(
                f"set server {BACKEND}/{server_name(index, backup=backup)} state {state}"
            )
            assert not answer.strip(), answer

    @contextlib.contextmanager
    def only(self, indices: Iterable[int]) -> Iterator[None]:
        """Drain every other replica (health checks go on), then put them back and wait UP."""
        others = [i for i in range(self.replicas) if i not in set(indices)]
        for index in others:
            self.set_state(index, "drain")
        try:
            yield
        finally:
            for index in others:
                self.set_state(index, "ready")
            for index in others:
                self.wait_up(index)

    def requests(self) -> list[Route]:
        """Every request HAProxy logged so far, in the order it logged them (their ends)."""
        self._scan()
        return list(self._requests)

    def route(self, request_id: str) -> Route | None:
        """The access-log line of the request that carried this X-Request-ID, once logged."""
        self._scan()
        return self._by_id.get(request_id)

    def changes(self) -> list[Change]:
        """Every UP/DOWN transition HAProxy logged, in order."""
        self._scan()
        return list(self._changes)

    def first_change(self, index: int, state: str, after: float) -> Change | None:
        """The first time replica `index` went `state` ("UP"/"DOWN") after `after`, if it did."""
        return next(
            (
                c
                for c in self.changes()
                if c.server == server_name(index) and c.state == state and c.time > after
            ),
            None,
        )

    def _scan(self) -> None:
        """Parse the log lines written since the last call (the log only grows)."""
        with self.log.open("rb") as log:
            log.seek(self._read)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._read += len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            if access := _ACCESS.match(line):
                route = _route(access)
                self._requests.append(route)
                if route.request_id:
                    self._by_id[route.request_id] = route
            elif change := _CHANGE.match(line):
                self._changes.append(
                    Change(_epoch(change["time"]), change["server"], change["state"], change["why"])
                )


def _route(access: re.Match[str]) -> Route:
    retries = access["retries"]
    return Route(
        access["request_id"],
        access["request"],
        _epoch(access["time"]),
        access["server"],
        int(access["status"]),
        access["termination"],
        int(retries.lstrip("+")),
        retries.startswith("+"),
    )


@contextlib.contextmanager
def haproxy_process(workdir: Path, replicas: Sequence[str]) -> Iterator[HAProxy]:
    """haproxy with deploy/haproxy.cfg on a free port in front of `replicas` (host:port each).

    Returns once it accepts; the replicas need not be up yet (see `HAProxy.wait_up`).
    """
    binary = haproxy_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcpw-haproxy-") as short:
        port = free_port()
        stats = Path(short) / "admin.sock"
        env = config_env(bind=f"127.0.0.1:{port}", replicas=replicas, stats_socket=stats)
        lb = HAProxy(port, len(replicas), stats, workdir / "haproxy.log")
        # One thread, added as a second file (the shipped one unchanged): with several,
        # HAProxy drops a log line when another thread holds stdout a moment too long
        # (fd_write_frag_line gives up; `show info` counts DroppedLogs), and the tests
        # read every line.
        one_thread = Path(short) / "one-thread.cfg"
        one_thread.write_text("global\n    nbthread 1\n")
        argv = [binary, "-db", "-f", str(CONFIG), "-f", str(one_thread)]
        with background(argv, env=env, port=port, cwd=workdir, log=lb.log):
            eventually(stats.exists, 10.0, "HAProxy's stats socket")
            yield lb
