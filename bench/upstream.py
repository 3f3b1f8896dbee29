"""What the hardened Scavio client costs per call over a bare httpx POST.

Both talk to the same stub upstream process on 127.0.0.1 over one keep-alive
connection, one call at a time. The baseline is the tutorial's own call
(POST with the key header, parse the JSON); the figure adds what the tools
add: a just-in-time key load, argument checks, the tenacity retry policy and
normalization to `{query, results}`.
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
from mcp_warden.demo.harness import stub_process
from mcp_warden.server.tools.scavio import ScavioClient

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


def run() -> list[Figure]:
    key = "sk_bench_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp, stub_process(Path(tmp), [key]) as stub:
        hardened, plain = asyncio.run(_measure(stub.url, key))
    return [
        Figure(
            "upstream client (stub on 127.0.0.1, sequential)",
            "ScavioClient.search, 5 results",
            hardened,
            "us/call",
            "bare httpx POST + json",
            plain,
        )
    ]
