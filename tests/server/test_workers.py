"""`mcp-warden serve --workers N`: N real processes on one port, each checked on its own.

Each test pins one keep-alive connection to every worker (`tests.support.workers`:
the worker is found from outside, by who holds the connection), so "every
worker" is proven worker by worker: a revocation and a signing-key rotation
reach each within the usual windows, a SIGKILLed worker costs the others no
request and is replaced (and logged), SIGTERM drains every worker and leaves
no process behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from mcp_warden.demo.harness import run_process, tools_call
from mcp_warden.server.run import GRACEFUL_SECONDS
from mcp_warden.tokens.keys import KeyDir
from tests.support.redis_server import RedisServer
from tests.support.replicas import JWKS_REFRESH_SECONDS, PROPAGATION_SECONDS, outcome
from tests.support.server import Deployment, Served, refused_starts
from tests.support.waiting import eventually
from tests.support.workers import LIST, Pinned, listed, meanwhile, pinned, worker_pids

pytestmark = pytest.mark.slow

SEARCH = tools_call("web_search", {"query": "workers"})
STARTUP = 60.0
"""Seconds until every worker accepts: each imports the server itself, on a shared, busy CI."""


def until_all(
    conns: list[Pinned], check: Callable[[Pinned], bool], within: float, what: str
) -> dict[int, float]:
    """Poll every pinned worker until `check` holds on each; seconds each took, by pid."""
    start = time.monotonic()
    took: dict[int, float] = {}
    while len(took) < len(conns):
        for conn in conns:
            if conn.pid not in took and check(conn):
                took[conn.pid] = time.monotonic() - start
        assert time.monotonic() - start < within, f"{what}: workers {took} of {len(conns)}"
        time.sleep(0.02)
    return took


def refused_by_all(conns: list[Pinned], token: str, within: float, reason: str) -> dict[int, float]:
    """`until_all` workers answer `token` 401; then each names `reason`. Seconds, by pid."""
    took = until_all(
        conns, lambda conn: conn.post(LIST, token).status_code == 401, within, f"{reason} refusal"
    )
    for conn in conns:
        ok, detail = outcome(conn.post(LIST, token))
        assert not ok
        assert detail.startswith(f"{reason}: "), detail
    return took


def test_bad_worker_counts_and_settings_are_one_line_and_exit_2(lab: Deployment) -> None:
    advice = " is not a number of processes; use a whole number from 1, or auto"
    any_port = ["--port", "0"]
    cases = {
        f"--workers='0'{advice}": ([*any_port, "--workers", "0"], {}),
        f"--workers='two'{advice}": ([*any_port, "--workers", "two"], {}),
        f"--workers='-1'{advice}": ([*any_port, "--workers", "-1"], {}),
        f"MCP_SERVE_WORKERS='0'{advice}": (any_port, {"MCP_SERVE_WORKERS": "0"}),
        f"MCP_SERVE_WORKERS='many'{advice}": (
            [*any_port, "--workers", "2"],
            {"MCP_SERVE_WORKERS": "many"},
        ),
        "--workers (MCP_SERVE_WORKERS) is for --transport http": (
            ["--transport", "stdio", "--workers", "2"],
            {},
        ),
        "MCP_REVOCATION_URL=memory:// lives in one process": (
            [*any_port, "--workers", "2"],
            {"MCP_REVOCATION_URL": "memory://"},
        ),
        # The parent checks the settings once, before any worker starts: one line, not N.
        "MCP_ENCRYPTION_KEY is not set": (
            [*any_port, "--workers", "2"],
            {"MCP_ENCRYPTION_KEY": ""},
        ),
    }
    assert set(refused_starts(lab.env, cases)) == set(cases)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_revocation_reaches_every_worker_within_a_second(
    lab: Deployment, store: str, request: pytest.FixtureRequest
) -> None:
    env = {}
    if store == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        env["MCP_REVOCATION_URL"] = redis.url
    token = lab.mint(["web_search"], sub=f"revoked-{store}")
    with lab.serve("--workers", "2", env=env, timeout=STARTUP) as served, pinned(served) as conns:
        assert len(conns) == 2
        for conn in conns:
            assert listed(conn.post(LIST, token)) == ["web_search"]
        done = meanwhile(conns, lambda: lab.cli("token", "revoke", "-", input=token, env=env))
        assert done.returncode == 0, done.stderr
        took = refused_by_all(conns, token, PROPAGATION_SECONDS, "revoked")
        print(f"\n{store}: revoked token refused by worker " + _ms(took))


def test_a_new_signing_key_and_a_retired_one_reach_every_worker(lab: Deployment) -> None:
    keys = KeyDir(lab.root / "keys")
    (old_kid,) = (info.kid for info in keys.live_keys())
    old = lab.mint(["web_search"], sub="old-key")
    window = JWKS_REFRESH_SECONDS + 1.0  # the reload interval, and a request's time
    with lab.serve("--workers", "2", timeout=STARTUP) as served, pinned(served) as conns:
        for conn in conns:
            assert listed(conn.post(LIST, old)) == ["web_search"]
        done = meanwhile(conns, lambda: lab.cli("keys", "new"))
        assert done.returncode == 0, done.stderr
        new = lab.mint(["web_search"], sub="new-key")
        took = until_all(
            conns, lambda conn: bool(listed(conn.post(LIST, new))), window, "the new key's token"
        )
        print(f"\nnew key's token accepted by worker {_ms(took)}")
        done = meanwhile(conns, lambda: lab.cli("keys", "retire", old_kid, "--force"))
        assert done.returncode == 0, done.stderr
        took = refused_by_all(conns, old, window, "unknown_key")
        print(f"retired key's token refused by worker {_ms(took)}")
        for conn in conns:
            assert listed(conn.post(LIST, new)) == ["web_search"]


def test_a_killed_worker_costs_the_others_no_request_and_is_replaced(lab: Deployment) -> None:
    token = lab.mint(["web_search"], sub="load")
    with lab.serve("--workers", "3", timeout=STARTUP) as served, pinned(served) as conns:
        victim, survivors = conns[0], conns[1:]
        stop = threading.Event()
        results: dict[int, list[tuple[float, bool, str]]] = {conn.pid: [] for conn in conns}

        def load(conn: Pinned) -> None:
            """tools/call and /healthz over this worker's connection until told (bounded)."""
            deadline = time.monotonic() + 60.0
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    ok, detail = outcome(conn.post(SEARCH, token))
                    health = conn.get("/healthz").status_code
                    ok, detail = ok and health == 200, detail or f"healthz {health}"
                except httpx.HTTPError as exc:
                    ok, detail = False, type(exc).__name__
                results[conn.pid].append((time.monotonic(), ok, detail))
                if not ok and conn is victim:
                    return  # its connection died with it

        def calls_after(pid: int, moment: float) -> int:
            return sum(1 for r in results[pid] if r[0] > moment)

        threads = [threading.Thread(target=load, args=(conn,)) for conn in conns]
        for thread in threads:
            thread.start()
        try:
            eventually(lambda: all(len(r) >= 5 for r in results.values()), 20, "load everywhere")
            os.kill(victim.pid, signal.SIGKILL)
            at = time.monotonic()
            eventually(
                lambda: all(calls_after(c.pid, at) >= 10 for c in survivors),
                20,
                "the other workers go on serving",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        # Not one request lost on the other workers, before or after the kill.
        assert all(ok for end, ok, _ in results[victim.pid] if end < at)
        for conn in survivors:
            failed = [r for r in results[conn.pid] if not r[1]]
            assert failed == [], (conn.pid, failed[:3])
        # The death is logged at WARNING with the pid and the signal, and a new worker serves.
        line = f"mcp-warden: WARNING worker {victim.pid} died (killed by SIGKILL); worker "
        eventually(lambda: line in served.output(), 20, "the death logged")
        replacement = int(served.output().split(line, 1)[1].split()[0])
        assert worker_pids(served.proc.pid) == {c.pid for c in survivors} | {replacement}
        with pinned(served, {replacement}) as (fresh,):
            assert fresh.get("/healthz").status_code == 200
            ok, detail = outcome(fresh.post(SEARCH, token))
            assert ok, detail
        assert served.output().count("mcp-warden: serving on ") == 1
        print(
            f"\nSIGKILL of worker {victim.pid}: "
            + ", ".join(f"worker {c.pid}: {len(results[c.pid])} calls, all ok" for c in survivors)
            + f"; worker {replacement} replaced it"
        )


def test_sigterm_drains_every_worker_and_leaves_no_process(lab: Deployment) -> None:
    token = lab.mint(["web_search"], sub="drain")
    lab.stub.reset()
    lab.stub.mode(delay=3.0)
    try:
        with lab.serve("--workers", "2", timeout=STARTUP) as served, pinned(served) as conns:
            parent = served.proc.pid
            group = {parent, *worker_pids(parent)}
            answers: dict[int, tuple[bool, str]] = {}

            def call(conn: Pinned) -> None:
                answers[conn.pid] = outcome(conn.post(SEARCH, token))

            threads = [threading.Thread(target=call, args=(conn,)) for conn in conns]
            for thread in threads:
                thread.start()
            eventually(lambda: lab.stub.calls() == 2, 10, "a call in flight on each worker")
            os.kill(parent, signal.SIGTERM)
            eventually(lambda: _refused(served), 2, "new connections refused while draining")
            for thread in threads:
                thread.join(GRACEFUL_SECONDS + 5)
            assert answers == {conn.pid: (True, "") for conn in conns}
            assert served.proc.wait(GRACEFUL_SECONDS + 5) == 0
            eventually(lambda: not _in_group(parent), 10, "every process of the server ended")
            assert not any(psutil.pid_exists(pid) for pid in group)
            assert "WARNING" not in served.output()
    finally:
        lab.stub.reset()


def _refused(served: Served) -> bool:
    """A new connection is not served: refused, or closed unanswered (it had reached the
    listen queue just before the last worker closed the socket)."""
    try:
        httpx.get(served.url.removesuffix("/mcp") + "/healthz", timeout=1.0)
    except (httpx.ConnectError, httpx.RemoteProtocolError):
        return True
    return False


def _in_group(pgid: int) -> list[int]:
    """The processes still in the server's process group (its session's leader is the parent)."""
    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


def test_workers_auto_is_one_per_usable_core_and_each_answers(lab: Deployment) -> None:
    cores = len(os.sched_getaffinity(0))
    token = lab.mint(["web_search"], sub="auto")
    with lab.serve("--workers", "auto", env={"MCP_SERVE_WORKERS": "1"}, timeout=STARTUP) as served:
        pids = worker_pids(served.proc.pid)
        if cores == 1:  # one process, as without --workers
            assert pids == set()
            return
        assert len(pids) == cores
        with pinned(served) as conns:
            for conn in conns:
                assert conn.get("/healthz").status_code == 200
                assert listed(conn.post(LIST, token)) == ["web_search"]
                assert outcome(conn.post(SEARCH, token)) == (True, "")
        # What each process holds once it has served (docs/deployment.md quotes these).
        for pid in [served.proc.pid, *sorted(pids)]:
            memory = psutil.Process(pid).memory_full_info()
            role = "parent" if pid == served.proc.pid else "worker"
            rss, uss = memory.rss / 2**20, memory.uss / 2**20
            print(f"\n{role} {pid}: RSS {rss:.0f} MiB, USS {uss:.0f} MiB")


def _ms(took: dict[int, float]) -> str:
    return ", ".join(f"{pid}: {seconds * 1000:.0f} ms" for pid, seconds in sorted(took.items()))


SUPERVISE = """
import sys
from mcp_warden.server import run, workers
sock = run.bind("127.0.0.1", 0)
config = run.uvicorn_config(workers.WorkerApp("127.0.0.1"), factory=True, workers=2)
supervisor = workers.Supervisor(config, sock, banner="mcp-warden: serving on (never)")
supervisor.run()
sys.exit(7 if supervisor.failed_start else 0)
"""


def test_a_worker_that_cannot_start_stops_the_parent_instead_of_looping(lab: Deployment) -> None:
    # The parent's own check passed, then the settings went bad (here: never checked).
    env = {**lab.env, "MCP_ENCRYPTION_KEY": ""}
    done = run_process([sys.executable, "-c", SUPERVISE], env, timeout=120)
    assert done.returncode == 7, done.stderr
    errors = [line for line in done.stderr.splitlines() if "a worker could not start" in line]
    assert errors
    assert all(
        line.startswith("mcp-warden: ERROR a worker could not start: MCP_ENCRYPTION_KEY is not set")
        for line in errors
    )
    assert "Traceback" not in done.stderr
    assert "serving on" not in done.stderr
