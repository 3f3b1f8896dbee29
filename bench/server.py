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

The load generator is lean: raw JSON-RPC POSTs with httpx (keep-alive, one
connection per client), `tools/call web_search` in the session-less
stateless protocol (MCP-Protocol-Version 2025-11-25: no initialize, one POST
per call), every answer checked. 1 and 16 concurrent clients; variants are
measured in alternating order over several rounds so drift hits them alike.
Latency is per call at the client; calls/s is the median over rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.common import Figure
from mcp_warden.config import Settings
from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import background, cli_env, free_port, stub_process, wait_for_line
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir

SECTION = "server over HTTP: tools/call web_search (stub upstream, raw JSON-RPC POSTs)"
ROUNDS = 3
CALLS_1 = 300  # per round, one client
CALLS_16 = 50  # per client per round, 16 clients
BANNER = "mcp-warden: serving on "
VARIANTS = ("auth off", "auth on", "auth on, verify in a thread")
BODY = (
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
    b'{"name":"web_search","arguments":{"query":"mcp server security"}}}'
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _client(url: str, token: str, calls: int, latencies: list[float]) -> None:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    async with httpx.AsyncClient(headers=headers, trust_env=False, timeout=30.0) as http:
        for _ in range(calls):
            start = time.perf_counter()
            response = await http.post(url, content=BODY)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200 or b'"isError":false' not in response.content:
                raise RuntimeError(f"bad answer {response.status_code}: {response.text[:200]}")


async def _round(url: str, token: str, clients: int, calls: int) -> tuple[float, list[float]]:
    """calls/s and the per-call latencies of `clients` concurrent clients."""
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(url, token, calls, latencies) for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies


async def _measure(urls: dict[str, str], token: str) -> dict[tuple[str, int], tuple[float, ...]]:
    """(variant, clients) -> (calls/s, p50 ms, p99 ms)."""
    for url in urls.values():  # warm up: connections, verifier cache, stub
        await _round(url, token, 4, 25)
    results: dict[tuple[str, int], tuple[float, ...]] = {}
    for clients, calls in ((1, CALLS_1), (16, CALLS_16)):
        rates: dict[str, list[float]] = {name: [] for name in urls}
        pooled: dict[str, list[float]] = {name: [] for name in urls}
        for index in range(ROUNDS):
            order = list(urls)[index % len(urls) :] + list(urls)[: index % len(urls)]
            for name in order:
                rate, latencies = await _round(urls[name], token, clients, calls)
                rates[name].append(rate)
                pooled[name] += latencies
        for name in urls:
            p50, p99 = (percentile(pooled[name], q) * 1000 for q in (0.5, 0.99))
            results[name, clients] = (statistics.median(rates[name]), p50, p99)
    return results


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[str]:
    """Start a process, wait for its `ready` line (returning the rest of it), stop it after."""
    with background(argv, env=env, log=log) as proc:
        yield wait_for_line(log, proc, ready, 60.0).removeprefix(ready)


def run() -> list[Figure]:
    api_key = "sk_bench_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        master = secrets.token_hex(32)
        KeyDir(root / "keys").new()
        CredentialStore(root / "creds.enc", parse_key(master)).set("scavio_api_key", api_key)
        env = cli_env(
            {
                "MCP_ENCRYPTION_KEY": master,
                "MCP_CREDENTIALS_FILE": str(root / "creds.enc"),
                "MCP_KEYS_DIR": str(root / "keys"),
                "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
                "MCP_AUDIT_LOG": str(root / "audit.jsonl"),
                "MCP_TOKEN_AUDIENCE": "http://127.0.0.1:8000/mcp",  # one audience for all three
            }
        )
        stub = stack.enter_context(stub_process(root, [api_key]))
        env["SCAVIO_BASE_URL"] = stub.url
        commands = {
            "auth off": [sys.executable, "-m", "bench.server", "noauth"],
            "auth on": [sys.executable, "-m", "mcp_warden", "serve", "--port"],
            "auth on, verify in a thread": [sys.executable, "-m", "bench.server", "offload"],
        }
        urls = {}
        for index, (name, argv) in enumerate(commands.items()):
            log = root / f"server-{index}.log"
            argv_port = [*argv, str(free_port())]
            urls[name] = stack.enter_context(_process(argv_port, env, log, BANNER))
        token = mint(
            root / "keys",
            issuer="mcp-warden",
            sub="bench",
            tools=["web_search"],
            ttl=3600,
            audience="http://127.0.0.1:8000/mcp",
        )
        results = asyncio.run(_measure(urls, token))
    return _figures(results)


def _figures(results: dict[tuple[str, int], tuple[float, ...]]) -> list[Figure]:
    figures = []
    for clients in (1, 16):
        off = results["auth off", clients]
        on = results["auth on", clients]
        who = f"{clients} client{'s' if clients > 1 else ''}"
        for index, (what, unit) in enumerate(
            (("calls/s", "calls/s"), ("p50", "ms"), ("p99", "ms"))
        ):
            goal = "<= 1.05x" if what == "p50" else None
            figures.append(
                Figure(
                    SECTION,
                    f"auth on, {what}, {who}",
                    on[index],
                    unit,
                    f"auth off, {who}",
                    off[index],
                    goal,
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
