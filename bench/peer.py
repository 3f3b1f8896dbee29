"""mcp-warden beside FastMCP 4.x: the same tool, stub, token and load; server CPU per call.

The servers run side by side on 127.0.0.1, each its own process, with the
same stub upstream (a real HTTP server), the same JWKS and the same token:

- ours, 1 worker: `mcp-warden serve`;
- ours, 2 workers: `mcp-warden serve --workers 2` (skipped, with a note, by
  a build whose `serve` has no `--workers`);
- FastMCP: a FastMCP 4.x server (the `bench` extra) built by this module's
  bench-only entry point (`python -m bench.peer fastmcp PORT`): its
  `JWTVerifier` with the EdDSA public key of the same JWKS, issuer and
  audience checked, the same `web_search` function (our Scavio client, so
  the upstream call costs both servers alike) registered with
  `auth=require_scopes("web_search")`, served by FastMCP's own `run` in the
  same transport mode as ours (stateless, JSON responses), access log off.

The load is bench/load.py's: 1 and 16 clients of raw JSON-RPC POSTs, the
servers taking turns over several rounds. Server CPU per call is the CPU
time the server's process (and its workers) spent over a round divided by
the calls it answered; the load generator's and the stub's CPU per call are
recorded beside it, since all of them share the same cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Figure, Unavailable
from bench.load import cpu_seconds, lab, load_round, percentile, server_process
from mcp_warden.demo.harness import free_port

SECTION = "peer: mcp-warden serve vs FastMCP 4.x, tools/call web_search (stub upstream, same load)"
ROUNDS = 3
CALLS = {1: 200, 16: 25}  # per client per round
OURS, WORKERS, FASTMCP = "ours, 1 worker", "ours, --workers 2", "FastMCP"
CPU_GOAL = "<= 2.5 ms and <= 0.5x"


@dataclass
class Tally:
    """What one server did under one load, summed over the rounds."""

    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    stub_cpu: float = 0.0
    load_cpu: float = 0.0

    def ms_per_call(self, seconds: float) -> float:
        return seconds / len(self.latencies) * 1000


def _has_workers_option() -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "mcp_warden", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    return "--workers" in help_text


async def _measure(
    servers: dict[str, tuple[str, int]], token: str, stub_pid: int
) -> dict[tuple[str, int], Tally]:
    """(server, clients) -> Tally; the servers take turns within each round."""
    for url, _pid in servers.values():  # warm up: connections, caches, imports
        await load_round(url, token, 4, 25)
    tallies: dict[tuple[str, int], Tally] = {}
    for clients, calls in CALLS.items():
        for index in range(ROUNDS):
            names = list(servers)
            for name in names[index % len(names) :] + names[: index % len(names)]:
                url, pid = servers[name]
                tally = tallies.setdefault((name, clients), Tally())
                before = (cpu_seconds(pid), cpu_seconds(stub_pid), time.process_time())
                rate, latencies = await load_round(url, token, clients, calls)
                after = (cpu_seconds(pid), cpu_seconds(stub_pid), time.process_time())
                tally.rates.append(rate)
                tally.latencies += latencies
                tally.server_cpu += after[0] - before[0]
                tally.stub_cpu += after[1] - before[1]
                tally.load_cpu += after[2] - before[2]
    return tallies


def run() -> list[Figure]:
    if importlib.util.find_spec("fastmcp") is None:
        raise Unavailable("FastMCP is not installed: pip install -e '.[bench]'")
    commands = {
        OURS: [sys.executable, "-m", "mcp_warden", "serve", "--port", "0"],
        # a fixed port: whatever way the workers share it, they share the one named
        WORKERS: [
            *[sys.executable, "-m", "mcp_warden", "serve"],
            *["--port", str(free_port()), "--workers", "2"],
        ],
    }
    if not _has_workers_option():
        del commands[WORKERS]
        print(
            "peer: skipped 'ours, --workers 2': this build's `serve` has no --workers",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bench = stack.enter_context(lab(Path(tmp)))
        servers = {
            name: stack.enter_context(server_process(argv, bench.env, bench.root / f"{index}.log"))
            for index, (name, argv) in enumerate(commands.items())
        }
        port = free_port()
        argv = [sys.executable, "-m", "bench.peer", "fastmcp", str(port)]
        log = bench.root / "fastmcp.log"
        servers[FASTMCP] = stack.enter_context(server_process(argv, bench.env, log, port=port))
        tallies = asyncio.run(_measure(servers, bench.token, bench.stub_pid))
    return _figures(tallies)


def _figures(tallies: dict[tuple[str, int], Tally]) -> list[Figure]:
    figures = []
    for clients in CALLS:
        who = f"{clients} client{'s' if clients > 1 else ''}"
        for what in ("server CPU/call", "calls/s", "p50", "p99"):
            goal = CPU_GOAL if what == "server CPU/call" else None
            figures.append(_row(tallies, clients, OURS, what, base=FASTMCP, goal=goal))
        if (WORKERS, clients) in tallies:
            for what in ("server CPU/call", "calls/s", "p50", "p99"):
                goal = ">= 1.6x" if what == "calls/s" and clients == 16 else None
                figures.append(_row(tallies, clients, WORKERS, what, base=OURS, goal=goal))
        every = [tally for (_, n), tally in tallies.items() if n == clients]
        calls = sum(len(t.latencies) for t in every)
        for what, seconds in (
            ("load generator CPU/call", sum(t.load_cpu for t in every)),
            ("stub CPU/call", sum(t.stub_cpu for t in every)),
        ):
            figures.append(
                Figure(SECTION, f"{what} (every server), {who}", seconds / calls * 1000, "ms")
            )
    return figures


def _row(
    tallies: dict[tuple[str, int], Tally],
    clients: int,
    name: str,
    what: str,
    *,
    base: str,
    goal: str | None = None,
) -> Figure:
    who = f"{clients} client{'s' if clients > 1 else ''}"
    value, unit = _value(tallies[name, clients], what)
    base_value, _ = _value(tallies[base, clients], what)
    return Figure(
        SECTION, f"{name}: {what}, {who}", value, unit, f"{base}, {who}", base_value, goal
    )


def _value(tally: Tally, what: str) -> tuple[float, str]:
    if what == "server CPU/call":
        return tally.ms_per_call(tally.server_cpu), "ms"
    if what == "calls/s":
        return statistics.median(tally.rates), "calls/s"
    return percentile(tally.latencies, 0.5 if what == "p50" else 0.99) * 1000, "ms"


def _fastmcp(port: int) -> None:
    """Bench-only: a FastMCP 4.x server with its own JWT auth serving our web_search."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from fastmcp import FastMCP
    from fastmcp.server.auth import require_scopes
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    from mcp_warden.config import Settings
    from mcp_warden.credentials.store import CredentialStore
    from mcp_warden.scavio.client import ScavioClient
    from mcp_warden.server.tools import all_tools
    from mcp_warden.tokens.jwks import parse_jwks

    settings = Settings.from_env()
    (public_key,) = parse_jwks(Path(settings.jwks).read_bytes()).values()
    verifier = JWTVerifier(
        public_key=public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        algorithm="EdDSA",
    )
    store = CredentialStore.from_settings(settings)
    scavio = ScavioClient.from_settings(settings, lambda: store.load(settings.scavio_credential))
    server = FastMCP("fastmcp-peer", auth=verifier)
    (spec,) = (spec for spec in all_tools(scavio) if spec.name == "web_search")
    server.tool(
        spec.fn,
        name=spec.name,
        description=spec.description,
        annotations=spec.annotations,
        auth=require_scopes("web_search"),
    )
    server.run(
        transport="http",
        host="127.0.0.1",
        port=port,
        path="/mcp",
        log_level="WARNING",
        show_banner=False,
        stateless_http=True,
        json_response=True,
        uvicorn_config={"access_log": False},
    )


if __name__ == "__main__":
    _fastmcp(int(sys.argv[2]))
