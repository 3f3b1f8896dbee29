"""Three replicas on one Redis versus one replica, under 16 clients, through HAProxy.

The deployment is the replica tests' own (`tests.support.replicas.cluster`):
three `mcp-warden serve` processes sharing a real redis-server for
revocations, reading the issuer's published JWKS, each calling its own stub
upstream, behind `haproxy` running deploy/haproxy.cfg. The load is 16
clients, each with its own token, sending raw JSON-RPC `tools/call
web_search` POSTs through HAProxy (round-robin), every answer checked. The
baseline is the same cluster with replicas 1 and 2 drained through HAProxy's
runtime API, so HAProxy sends everything to replica 0, measured in the same
run; the variants alternate over two rounds so drift hits both alike.

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
from tests.support.haproxy import HAProxy
from tests.support.replicas import Call, cluster, drive, figures, load_seconds

SECTION = "replicas: 16 clients, tools/call web_search through HAProxy (round-robin)"
CLIENTS = 16
ROUNDS = 2
WARM_UP_SECONDS = 2.0


async def _load(
    haproxy: HAProxy, replicas: list[int], tokens: list[tuple[str, str]], seconds: float
) -> list[Call]:
    calls = await drive(haproxy, tokens, seconds)
    served = {c.replica for c in calls}
    if served != set(replicas):
        raise RuntimeError(f"HAProxy sent calls to replicas {served}, not {replicas}")
    failed = [c for c in calls if not c.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(calls)} calls failed, e.g. {failed[0]}")
    return calls


def run() -> list[Figure]:
    if shutil.which("redis-server") is None:
        raise Unavailable("redis-server is not installed (apt-get install redis-server)")
    if shutil.which("haproxy") is None:
        raise Unavailable("haproxy is not installed (apt-get install haproxy)")
    per_round = load_seconds(30.0) / ROUNDS
    with tempfile.TemporaryDirectory() as tmp, cluster(Path(tmp)) as lab:
        tokens = [
            (f"bench-{n}", lab.issuer.mint(["web_search"], sub=f"bench-{n}"))
            for n in range(CLIENTS)
        ]
        variants = {"3 replicas": [0, 1, 2], "1 replica": [0]}
        asyncio.run(_load(lab.haproxy, [0, 1, 2], tokens, WARM_UP_SECONDS))
        pooled: dict[str, list[Call]] = {name: [] for name in variants}
        for index in range(ROUNDS):
            order = list(variants) if index % 2 == 0 else list(reversed(variants))
            for name in order:
                with lab.haproxy.only(variants[name]):
                    calls = _load(lab.haproxy, variants[name], tokens, per_round)
                    pooled[name] += asyncio.run(calls)
    three, one = (figures(pooled[name], per_round * ROUNDS) for name in variants)
    return [
        Figure(
            SECTION, "3 replicas, calls/s", three.per_second, "calls/s", "1 replica", one.per_second
        ),
        Figure(SECTION, "3 replicas, p50", three.p50_ms, "ms", "1 replica", one.p50_ms),
        Figure(SECTION, "3 replicas, p99", three.p99_ms, "ms", "1 replica", one.p99_ms),
    ]
