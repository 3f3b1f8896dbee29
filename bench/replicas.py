"""Three replicas on one Redis versus one replica, under 16 clients, through the balancer.

The deployment is the replica tests' own (`tests.support.replicas.cluster`):
three `mcp-warden serve` processes sharing a real redis-server for
revocations, reading the issuer's published JWKS, each calling its own stub
upstream. The load is 16 clients, each with its own token, sending raw
JSON-RPC `tools/call web_search` POSTs through the round-robin balancer,
every answer checked. The baseline is the same cluster with the balancer
over replica 0 alone, measured in the same run; the variants alternate over
two rounds so drift hits both alike.

Duration: MCP_WARDEN_LOAD_SECONDS per variant (default 30 s), split over the
rounds. On one small machine the replicas, the stubs, Redis and the load
generator share the same cores: the figure shows what spreading costs or
gains here, not what separate hosts would give.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from bench.common import Figure, Unavailable
from tests.support.replicas import Balancer, Call, cluster, drive, figures, load_seconds

SECTION = "replicas: 16 clients, tools/call web_search through a round-robin balancer"
CLIENTS = 16
ROUNDS = 2
WARM_UP_SECONDS = 2.0


async def _load(bases: list[str], tokens: list[tuple[str, str]], seconds: float) -> list[Call]:
    async with Balancer(bases) as balancer:
        calls = await drive(balancer, tokens, seconds)
    failed = [c for c in calls if not c.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(calls)} calls failed, e.g. {failed[0]}")
    return calls


def run() -> list[Figure]:
    if shutil.which("redis-server") is None:
        raise Unavailable("redis-server is not installed (apt-get install redis-server)")
    per_round = load_seconds(30.0) / ROUNDS
    with tempfile.TemporaryDirectory() as tmp, cluster(Path(tmp)) as lab:
        tokens = [
            (f"bench-{n}", lab.issuer.mint(["web_search"], sub=f"bench-{n}"))
            for n in range(CLIENTS)
        ]
        variants = {"3 replicas": lab.urls, "1 replica": lab.urls[:1]}
        asyncio.run(_load(lab.urls, tokens, WARM_UP_SECONDS))
        pooled: dict[str, list[Call]] = {name: [] for name in variants}
        for index in range(ROUNDS):
            order = list(variants) if index % 2 == 0 else list(reversed(variants))
            for name in order:
                pooled[name] += asyncio.run(_load(variants[name], tokens, per_round))
    three, one = (figures(pooled[name], per_round * ROUNDS) for name in variants)
    return [
        Figure(
            SECTION, "3 replicas, calls/s", three.per_second, "calls/s", "1 replica", one.per_second
        ),
        Figure(SECTION, "3 replicas, p50", three.p50_ms, "ms", "1 replica", one.p50_ms),
        Figure(SECTION, "3 replicas, p99", three.p99_ms, "ms", "1 replica", one.p99_ms),
    ]
