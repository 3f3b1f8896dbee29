"""A `serve --workers N` under test: its worker processes, and a connection pinned to each.

with lab.serve("--workers", "2") as served, pinned(served) as conns:
    for conn in conns:                       # one keep-alive connection per worker
        conn.post(LIST, token)               # answered by worker conn.pid, or the test fails

No answer says which worker gave it (a pid is no client's business). The test
finds out from outside, as an operator would with `ss -tp`: the worker is the
process that holds the server end of the client's TCP connection. A `Pinned`
connection checks on every answer that it is still that connection, so a
request can never silently land on another worker. The server closes a
keep-alive connection idle for 5 s (uvicorn's default), so whatever takes
longer between two requests (a CLI process) runs in `meanwhile`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psutil

from mcp_warden.demo.harness import jsonrpc_headers
from tests.support.server import Served

T = TypeVar("T")
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def worker_pids(parent: int) -> set[int]:
    """The pids of `parent`'s workers (multiprocessing's resource tracker is no worker)."""
    pids = set()
    for child in psutil.Process(parent).children():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if "spawn_main" in " ".join(child.cmdline()):
                pids.add(child.pid)
    return pids


class Connection:
    """An httpx client on one keep-alive connection that notes the client address of each answer.

    The address is read when the answer's headers arrive: a worker that is
    draining closes the connection right after its last answer.
    """

    def __init__(self, base: str) -> None:
        self.addresses: list[tuple[str, int]] = []
        self.http = httpx.Client(
            base_url=base,
            timeout=10.0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            event_hooks={"response": [self._note]},
            trust_env=False,
        )

    def _note(self, response: httpx.Response) -> None:
        address = response.extensions["network_stream"].get_extra_info("client_addr")
        self.addresses.append((str(address[0]), int(address[1])))


def holder(pids: set[int], client: tuple[str, int]) -> int | None:
    """Which of `pids` holds the server end of the TCP connection from `client`."""
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and (conn.raddr.ip, conn.raddr.port) == client:
                    return pid
    return None


@dataclass
class Pinned:
    """One keep-alive HTTP connection, served by worker `pid` for as long as it lives."""

    pid: int
    connection: Connection
    client: tuple[str, int]

    def get(self, path: str) -> httpx.Response:
        return self._checked(self.connection.http.get(path))

    def post(self, message: object, token: str) -> httpx.Response:
        body = json.dumps(message).encode()
        headers = jsonrpc_headers(token)
        return self._checked(self.connection.http.post("/mcp", content=body, headers=headers))

    def _checked(self, response: httpx.Response) -> httpx.Response:
        address = self.connection.addresses[-1]
        assert address == self.client, f"worker {self.pid}'s connection was replaced"
        return response


@contextlib.contextmanager
def pinned(
    served: Served, pids: set[int] | None = None, *, within: float = 30.0
) -> Iterator[list[Pinned]]:
    """A connection to each worker of `served` (or to each of `pids`), closed at the end.

    New connections go to whichever worker accepts first; each is kept if its
    worker has none yet, until every worker has one (bounded by `within`).
    """
    want = pids if pids is not None else worker_pids(served.proc.pid)
    assert want, "no worker processes"
    base = served.url.removesuffix("/mcp")
    found: dict[int, Pinned] = {}
    with contextlib.ExitStack() as stack:
        deadline = time.monotonic() + within
        while set(found) != want:
            assert time.monotonic() < deadline, f"no connection to workers {want - set(found)}"
            connection = Connection(base)
            stack.callback(connection.http.close)  # kept or not: closing twice is harmless
            response = connection.http.get("/healthz")
            assert response.status_code == 200, response.text
            client = connection.addresses[-1]
            pid = holder(want, client)
            if pid is not None and pid not in found:
                found[pid] = Pinned(pid, connection, client)
            else:
                connection.http.close()
            for kept in found.values():  # still in use: not closed as idle meanwhile
                assert kept.get("/healthz").status_code == 200
        yield [found[pid] for pid in sorted(found)]


def meanwhile(conns: list[Pinned], work: Callable[[], T]) -> T:
    """`work()` in a thread, while every pinned connection keeps being used (see above)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(work)
        while not future.done():
            for conn in conns:
                assert conn.get("/healthz").status_code == 200
            concurrent.futures.wait([future], timeout=0.5)
        return future.result()


def listed(response: httpx.Response) -> list[str]:
    """The tool names of a tools/list answer (empty for any refusal)."""
    if response.status_code != 200:
        return []
    body: Any = response.json()
    return [tool["name"] for tool in body["result"]["tools"]]
