"""What the hardened Scavio client costs per call over a bare httpx POST.

Both talk to the same stub upstream process on 127.0.0.1 over one keep-alive
connection, one call at a time. The baseline is the tutorial's own call
(POST with the key header, parse the JSON); the figure adds what the tools
add: a just-in-time key load, argument checks, the tenacity retry policy and
normalization to `{query, results}`.

Why the client loads the key inline (`mcp_warden.scavio.keys`): the same
credential-store load, unchanged store, run inline beside the same load
behind `asyncio.to_thread` (the worker-thread hop it would otherwise take).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.common import Figure
from mcp_warden.credentials.envelope import generate_key, parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import stub_process
from mcp_warden.scavio.client import ScavioClient

CALLS = 300
REPEAT = 5


async def _batch_us(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - start) / CALLS * 1e6


async def _measure(url: str, key: str) -> tuple[float, float]:
    """Median microseconds per call (hardened, baseline), batches interleaved against drift."""
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=url, trust_env=False) as bare,
        ScavioClient(base_url=url, profile="scavio-v2", load_key=lambda: key) as client,
    ):

        async def baseline() -> object:
            response = await bare.post("/api/v2/google", json={"query": "mcp"}, headers=auth)
            response.raise_for_status()
            return response.json()["organic_results"][:5]

        async def hardened() -> object:
            return await client.search("mcp", 5)

        await baseline()  # open both keep-alive connections
        await hardened()
        runs = [(await _batch_us(hardened), await _batch_us(baseline)) for _ in range(REPEAT)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


async def _key_load(store: CredentialStore, name: str) -> tuple[float, float]:
    """Median microseconds per key load (through a worker thread, inline)."""

    async def hop() -> object:
        return await asyncio.to_thread(store.load, name)

    async def inline() -> object:
        return store.load(name)

    await hop()  # start the default executor's thread
    runs = [(await _batch_us(hop), await _batch_us(inline)) for _ in range(REPEAT)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def run() -> list[Figure]:
    key = "sk_bench_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        store = CredentialStore(Path(tmp) / "mcp_credentials.enc", parse_key(generate_key()))
        store.set("scavio_api_key", key)
        threaded, inline = asyncio.run(_key_load(store, "scavio_api_key"))
        with stub_process(Path(tmp), [key]) as stub:
            hardened, plain = asyncio.run(_measure(stub.url, key))
    return [
        Figure(
            "upstream client (stub on 127.0.0.1, sequential)",
            "ScavioClient.search, 5 results",
            hardened,
            "us/call",
            "bare httpx POST + json",
            plain,
        ),
        Figure(
            "upstream client (stub on 127.0.0.1, sequential)",
            "key load through a worker thread (asyncio.to_thread), store unchanged",
            threaded,
            "us/call",
            "the same load inline (what ScavioClient does)",
            inline,
        ),
    ]
