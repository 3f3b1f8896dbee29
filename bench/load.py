"""The HTTP load the server benchmarks share: raw JSON-RPC `tools/call web_search` POSTs.

The load generator is lean: aiohttp with keep-alive, one connection per
client, `tools/call web_search` in the session-less stateless protocol
(MCP-Protocol-Version 2025-11-25: no initialize, one POST per call), every
answer checked. Latency is per call at the client.

CPU: `cpu_seconds(pid)` is the user+system time of a process and all its
descendants (a server's workers), read from the kernel's accounting with
psutil; a server's CPU per call is far less noisy here than its wall-clock
figures, since the other processes on the same cores only delay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import background, cli_env, stub_process, wait_for_line
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir

BODY = (
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
    b'{"name":"web_search","arguments":{"query":"mcp server security"}}}'
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }


def check_answer(status: int, text: str) -> None:
    """RuntimeError unless the answer is a successful tools/call result (JSON or one SSE event)."""
    if status == 200 and text.startswith("event:"):  # an SSE stream of one event
        text = next((line[5:] for line in text.splitlines() if line.startswith("data:")), "")
    try:
        result = json.loads(text)["result"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        result = None
    if not isinstance(result, dict) or result.get("isError") or "structuredContent" not in result:
        raise RuntimeError(f"bad answer {status}: {text[:200]}")


async def client(url: str, token: str, calls: int, latencies: list[float]) -> None:
    """One client: `calls` sequential tools/call POSTs on one keep-alive connection.

    aiohttp rather than httpx: the load generator shares the server's cores, and
    aiohttp's client costs it a fraction of httpx's CPU per request.
    """
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(
        headers=headers(token), connector=connector, timeout=timeout
    ) as http:
        for _ in range(calls):
            start = time.perf_counter()
            async with http.post(url, data=BODY) as response:
                text = await response.text()
            latencies.append(time.perf_counter() - start)
            check_answer(response.status, text)


async def load_round(url: str, token: str, clients: int, calls: int) -> tuple[float, list[float]]:
    """calls/s and the per-call latencies of `clients` concurrent clients, `calls` each."""
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(client(url, token, calls, latencies) for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of process `pid` and every descendant, live or reaped."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:  # a worker that ended between the two calls
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


# -- the servers under load ---------------------------------------------------

AUDIENCE = "http://127.0.0.1:8000/mcp"  # one audience for every server of a run
BANNER = "mcp-warden: serving on "


@dataclass(frozen=True)
class Lab:
    """A key directory, a credential store holding the stub's key, the stub, one token."""

    root: Path
    env: dict[str, str]
    stub_pid: int
    token: str


@contextlib.contextmanager
def lab(root: Path) -> Iterator[Lab]:
    """Everything a server process of the benchmarks needs, in `root`; the stub stops after.

    The token names `web_search` in our `tools` claim and in an RFC 9068 `scope`
    claim (what a FastMCP server's `require_scopes` reads; ours ignores it).
    """
    api_key = "sk_bench_" + secrets.token_urlsafe(24)
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
            "MCP_TOKEN_AUDIENCE": AUDIENCE,
        }
    )
    token = mint(
        root / "keys",
        issuer="mcp-warden",
        sub="bench",
        tools=["web_search"],
        ttl=3600,
        audience=AUDIENCE,
        extra_claims={"scope": "web_search"},
    )
    with stub_process(root, [api_key]) as stub:
        env["SCAVIO_BASE_URL"] = stub.url
        assert stub.pid is not None
        yield Lab(root, env, stub.pid, token)


@contextlib.contextmanager
def server_process(
    argv: list[str], env: dict[str, str], log: Path, *, port: int | None = None
) -> Iterator[tuple[str, int]]:
    """Start a server, wait until it serves (its banner, or `port` accepting): (URL, pid).

    Without `port`, the server prints our banner with its URL; with it, the URL is
    http://127.0.0.1:PORT/mcp.
    """
    with background(argv, env=env, log=log, port=port, timeout=60.0) as proc:
        if port is None:
            url = wait_for_line(log, proc, BANNER, 60.0).removeprefix(BANNER)
        else:
            url = f"http://127.0.0.1:{port}/mcp"
        yield url, proc.pid
