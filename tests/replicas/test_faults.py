"""Faults mid-load: a replica SIGKILLed; redis-server stopped, then restarted.

Both bounded: a few seconds of load each, stopped by the test itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from mcp_warden.demo.harness import tools_call
from mcp_warden.tokens.revocation.redis import PREFIX
from tests.support.replicas import (
    PROPAGATION_SECONDS,
    REVOCATION_REFRESH_SECONDS,
    SEARCH,
    Balancer,
    Call,
    cluster,
    drive,
    figures,
    http_client,
    jti_and_exp,
    on_every_replica,
    send,
    span,
)

pytestmark = pytest.mark.slow

CLIENTS = 16
PAUSE = 0.01


def test_sigkill_of_one_replica_mid_load_fails_no_call_on_the_others(tmp_path: Path) -> None:
    with cluster(tmp_path) as lab:
        tokens = [(f"c{n}", lab.issuer.mint(["web_search"], sub=f"c{n}")) for n in range(CLIENTS)]
        victim = lab.replicas[0]

        async def go() -> tuple[list[Call], float, Balancer]:
            stop = asyncio.Event()
            async with Balancer(lab.urls) as lb:
                load = asyncio.create_task(drive(lb, tokens, 60, stop=stop, pause=PAUSE))
                await asyncio.sleep(1.5)
                killed = time.time()
                await asyncio.to_thread(lab.kill, victim)
                await asyncio.sleep(3.0)
                stop.set()
                return await load, killed, lb

        calls, killed, lb = asyncio.run(go())
        survivors = [c for c in calls if c.replica != victim.index]
        on_victim = [c for c in calls if c.replica == victim.index]
        failed = [c for c in calls if not c.ok]
        # Under load a slow /healthz may have taken a replica out (and back) before the kill;
        # what counts is the first ejection after it.
        ejected = min((t for t in lb.ejected(victim.index) if t >= killed), default=None)
        assert ejected is not None, "the balancer never took the killed replica out"
        # The others kept serving: every call routed to them succeeded, before and after.
        assert all(c.ok for c in survivors), [c for c in survivors if not c.ok][:3]
        assert any(c.start > killed + 1.0 for c in survivors)
        # Only calls routed to the dead replica failed, with no HTTP answer, and only
        # those sent before the balancer took it out (one in flight per client at most).
        assert all(c.replica == victim.index and c.status is None for c in failed)
        assert len(failed) <= CLIENTS
        # (A call routed in panic mode, when slow health checks on a loaded machine had taken
        # every replica out, may reach it: the balancer then tries all, by design.)
        assert not [c for c in on_victim if c.start > ejected and not c.panic]
        assert all(c.ok for c in on_victim if c.end < killed)
        after = [c for c in survivors if c.start > ejected]
        print(
            f"\nSIGKILL of replica {victim.index}: {len(failed)} failed calls, all routed to it "
            f"before the balancer took it out {(ejected - killed) * 1000:.0f} ms after the kill; "
            f"{len(survivors)} calls on the survivors, all ok; after the kill: "
            f"{figures(after, span(after)).line('survivors')}"
        )


STALE_SECONDS = 3.0  # MCP_REVOCATION_STALE_SECONDS for this test (default 30)
OUTAGE_SECONDS = STALE_SECONDS + 2.5


async def probe(
    bases: Sequence[str], token: str, label: str, stop: asyncio.Event, interval: float = 0.05
) -> list[Call]:
    """Call every replica directly with `token` (no balancer) until `stop`."""
    calls: list[Call] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(http_client(b, connections=1)) for b in bases]
        while not stop.is_set():
            for index, http in enumerate(clients):
                calls.append(
                    await send(http, index, label, token, tools_call("web_search", SEARCH))
                )
            await asyncio.sleep(interval)
    return calls


def test_redis_outage_keeps_known_revocations_then_fails_closed_and_recovers(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, stale_seconds=STALE_SECONDS) as lab:
        pids = lab.running()
        good = lab.issuer.mint(["web_search"], sub="good")
        revoked = lab.issuer.mint_cli(["web_search"], sub="revoked-before")
        jti, exp = jti_and_exp(revoked)
        done = lab.issuer.cli("token", "revoke", "--jti", jti, "--exp", str(exp))
        assert done.returncode == 0, done.stderr
        late = lab.issuer.mint(["web_search"], sub="revoked-after")
        late_jti, late_exp = jti_and_exp(late)

        async def go() -> tuple[list[Call], list[Call], list[Call], float, float, list[Call]]:
            await on_every_replica(lab.urls, revoked, refused=True, timeout=5)
            stop = asyncio.Event()
            async with Balancer(lab.urls) as lb:
                load = asyncio.create_task(drive(lb, [("good", good)] * 4, 60, stop=stop))
                probes = [
                    asyncio.create_task(probe(lab.urls, t, label, stop))
                    for label, t in (("good", good), ("revoked", revoked))
                ]
                try:
                    return await outage(stop, load, probes)
                finally:
                    stop.set()
                    await asyncio.gather(load, *probes, return_exceptions=True)

        async def outage(
            stop: asyncio.Event,
            load: asyncio.Task[list[Call]],
            probes: list[asyncio.Task[list[Call]]],
        ) -> tuple[list[Call], list[Call], list[Call], float, float, list[Call]]:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(lab.redis.stop)
            down = time.time()
            # A revocation during the outage cannot reach the replicas: the CLI says so.
            refused = await asyncio.to_thread(
                lab.issuer.cli, "token", "revoke", "--jti", late_jti, "--exp", str(late_exp)
            )
            assert refused.returncode == 1
            assert "NOT recorded" in refused.stderr, refused.stderr
            await asyncio.sleep(down + OUTAGE_SECONDS - time.time())
            up = time.time()  # from here Redis may accept again
            await asyncio.to_thread(lab.redis.start)
            recovered = await on_every_replica(lab.urls, good, refused=False, timeout=10)
            await asyncio.sleep(1.0)
            stop.set()
            calls = await load
            good_probes, revoked_probes = [await p for p in probes]
            return calls, good_probes, revoked_probes, down, up, recovered

        calls, good_probes, revoked_probes, down, up, recovered = asyncio.run(go())
        goods = calls + good_probes
        # The revocation known before the outage was enforced throughout, on every replica.
        assert {c.replica for c in revoked_probes} == {0, 1, 2}
        assert all(c.status == 401 and c.detail.startswith("revoked: ") for c in revoked_probes)
        # Within the stale window the replicas kept answering from their view ...
        # (the last sync before the stop may be up to one refresh and a read older than `down`)
        window = STALE_SECONDS - 2 * REVOCATION_REFRESH_SECONDS - 0.25
        fresh = [c for c in goods if down <= c.start < down + window]
        assert fresh
        assert all(c.ok for c in fresh), [c for c in fresh if not c.ok][:3]
        # ... and past it no token they cannot check was accepted: a clear 503 instead.
        closed = [c for c in goods if down + STALE_SECONDS < c.start < up]
        assert {c.replica for c in good_probes if c in closed} == {0, 1, 2}
        assert all(c.status == 503 for c in closed), [c for c in closed if c.status != 503][:3]
        assert all(c.detail.startswith("revocation_unavailable: ") for c in closed)
        first_503 = min(c.start for c in goods if c.status == 503)
        last_ok = max(c.end for c in goods if c.ok and c.start < up)
        # Redis back: every replica serves again without a restart, and the revocation
        # made before the outage is enforced and back in the (restarted, empty) Redis.
        recovery = [c.end - up for c in recovered]
        assert all(c.ok for c in goods if c.start > up + max(recovery))
        with contextlib.closing(lab.redis_client()) as client:
            assert client.zscore(PREFIX + "jti", jti) is not None
        after = asyncio.run(on_every_replica(lab.urls, revoked, refused=True, timeout=1))
        assert all(c.detail.startswith("revoked: ") for c in after)
        # New revocations flow again.
        done = lab.issuer.cli("token", "revoke", late)
        assert done.returncode == 0, done.stderr
        asyncio.run(on_every_replica(lab.urls, late, refused=True, timeout=PROPAGATION_SECONDS))
        assert lab.running() == pids
        print(
            f"\nRedis stopped (MCP_REVOCATION_STALE_SECONDS={STALE_SECONDS:g}): last accepted call "
            f"ended {last_ok - down:.2f} s after, first 503 revocation_unavailable at "
            f"{first_503 - down:.2f} s; revoked token refused throughout "
            f"({len(revoked_probes)} probes); Redis restarted empty: every replica serving "
            f"again within {max(recovery) * 1000:.0f} ms, no restart, revocation written back"
        )
