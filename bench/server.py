"""What authentication and per-tool enforcement cost, through the real server over HTTP.

Three server processes run side by side on 127.0.0.1 with the same stub
upstream, credential store and tools:

- auth on: the product, `mcp-warden serve` (bearer verification through the
  SDK hook, the 403 scope layer, ToolGuard, guarded tools, one audit line
  per call);
- auth off: the same SDK server and tools with no verifier, no guard and no
  audit, built by this module's bench-only entry point
  (`python -m bench.server noauth PORT`); the product has no such option;
- auth on, verify in a worker thread: the product app with
  `offload_verify=True`, what an https MCP_JWKS does, to price the hop.

The load is bench/load.py's (raw JSON-RPC `tools/call web_search` POSTs,
every answer checked), 1 and 16 concurrent clients; variants are measured
in alternating order over several rounds so drift hits them alike. Latency
is per call at the client; calls/s is the median over rounds. What
authentication costs is judged by CPU, not wall-clock: the server process's
CPU per call with auth on against auth off under the same load (the
difference is the SDK's auth middleware plus all our layers), since the
stub, the load generator and other work share these cores and move the
wall-clock figures by more than the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import Figure
from bench.load import BANNER, cpu_seconds, lab, load_round, percentile, server_process
from mcp_warden.config import Settings
from mcp_warden.demo.harness import free_port

SECTION = "server over HTTP: tools/call web_search (stub upstream, raw JSON-RPC POSTs)"
ROUNDS = 10  # the auth share is a small difference of two CPU figures: many paired rounds
CALLS_1 = 300  # per round, one client
CALLS_16 = 50  # per client per round, 16 clients
VARIANTS = ("auth off", "auth on", "auth on, verify in a thread")


async def _measure(
    servers: dict[str, tuple[str, int]], token: str
) -> dict[tuple[str, int], tuple[float, ...]]:
    """(variant, clients) -> (calls/s, p50 ms, p99 ms, server CPU ms per call, auth share %).

    The auth share is the median over rounds of each round's (on - off) / on: the two
    variants run back to back in a round, so drift between rounds cancels out.
    """
    for url, _pid in servers.values():  # warm up: connections, verifier cache, stub
        await load_round(url, token, 4, 25)
    results: dict[tuple[str, int], tuple[float, ...]] = {}
    for clients, calls in ((1, CALLS_1), (16, CALLS_16)):
        rates: dict[str, list[float]] = {name: [] for name in servers}
        pooled: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, float] = dict.fromkeys(servers, 0.0)
        per_round: dict[str, list[float]] = {name: [] for name in servers}
        for index in range(ROUNDS):
            order = list(servers)[index % len(servers) :] + list(servers)[: index % len(servers)]
            for name in order:
                url, pid = servers[name]
                before = cpu_seconds(pid)
                rate, latencies = await load_round(url, token, clients, calls)
                used = cpu_seconds(pid) - before
                cpu[name] += used
                per_round[name].append(used / len(latencies))
                rates[name].append(rate)
                pooled[name] += latencies
        shares = [
            (on - off) / on * 100
            for on, off in zip(per_round["auth on"], per_round["auth off"], strict=True)
        ]
        for name in servers:
            p50, p99 = (percentile(pooled[name], q) * 1000 for q in (0.5, 0.99))
            per_call = cpu[name] / len(pooled[name]) * 1000
            share = statistics.median(shares)
            results[name, clients] = (statistics.median(rates[name]), p50, p99, per_call, share)
    return results


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bench = stack.enter_context(lab(Path(tmp)))
        commands = {
            "auth off": [sys.executable, "-m", "bench.server", "noauth"],
            "auth on": [sys.executable, "-m", "mcp_warden", "serve", "--port"],
            "auth on, verify in a thread": [sys.executable, "-m", "bench.server", "offload"],
        }
        servers = {
            name: stack.enter_context(
                server_process([*argv, str(free_port())], bench.env, bench.root / f"{index}.log")
            )
            for index, (name, argv) in enumerate(commands.items())
        }
        results = asyncio.run(_measure(servers, bench.token))
    return _figures(results)


def _figures(results: dict[tuple[str, int], tuple[float, ...]]) -> list[Figure]:
    figures = []
    for clients in (1, 16):
        off = results["auth off", clients]
        on = results["auth on", clients]
        who = f"{clients} client{'s' if clients > 1 else ''}"
        for index, (what, unit) in enumerate(
            (("calls/s", "calls/s"), ("p50", "ms"), ("p99", "ms"), ("server CPU/call", "ms"))
        ):
            figures.append(
                Figure(
                    SECTION,
                    f"auth on, {what}, {who}",
                    on[index],
                    unit,
                    f"auth off, {who}",
                    off[index],
                )
            )
        figures.append(
            Figure(
                SECTION,
                f"authentication's share of the server CPU/call (on - off, median of "
                f"{ROUNDS} paired rounds), {who}",
                on[4],
                "%",
                goal="<= 5%",
            )
        )
        thread = results["auth on, verify in a thread", clients]
        figures.append(
            Figure(
                SECTION,
                f"verify in a worker thread (https JWKS), p50, {who}",
                thread[1],
                "ms",
                f"auth on (verify inline), {who}",
                on[1],
            )
        )
    return figures


def _serve(variant: str, port: int) -> None:
    """Bench-only servers: the same app without auth, or with verification in a thread."""
    from bench.auth_layers import unprotected
    from mcp_warden.server.app import Runtime
    from mcp_warden.server.run import bind, configure_logging, run_uvicorn

    configure_logging()
    runtime = Runtime.open(Settings.from_env())
    if variant == "noauth":
        sock = bind("127.0.0.1", port)
        run_uvicorn(unprotected(runtime), sock, banner=f"{BANNER}http://127.0.0.1:{port}/mcp")
    else:
        runtime.warden.run_http(runtime.server(offload_verify=True), port=port)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
