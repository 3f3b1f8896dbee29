"""Faults mid-load, through HAProxy: a replica SIGKILLed; one replica failing its health check
(its own Redis stopped, then restarted); the shared redis-server stopped, then restarted, so
every replica fails its checks at once.

All bounded: a few seconds of load each, stopped by the test itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

import pytest

from mcp_warden.demo.harness import tools_call
from mcp_warden.tokens.revocation.redis import PREFIX
from tests.support.haproxy import HAProxy, server_name
from tests.support.replicas import (
    PROPAGATION_SECONDS,
    REVOCATION_REFRESH_SECONDS,
    SEARCH,
    Call,
    cluster,
    drive,
    figures,
    http_client,
    jti_and_exp,
    on_every_replica,
    routed,
    send,
    span,
    start_redis,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

CLIENTS = 16
PAUSE = 0.01
COUNTERS = ("stot", "hrsp_2xx", "wredis", "wretr", "eresp", "srv_abrt", "cli_abrt", "econ")


def test_sigkill_of_one_replica_mid_load_fails_only_calls_already_routed_to_it(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as lab:
        tokens = [(f"c{n}", lab.issuer.mint(["web_search"], sub=f"c{n}")) for n in range(CLIENTS)]
        victim = lab.replicas[0]

        async def go() -> tuple[list[Call], float, float]:
            stop = asyncio.Event()
            load = asyncio.create_task(drive(lab.haproxy, tokens, 60, stop=stop, pause=PAUSE))
            await asyncio.sleep(1.5)
            killing = time.time()
            await asyncio.to_thread(lab.kill, victim)
            killed = time.time()  # the process is gone
            await asyncio.sleep(3.0)
            stop.set()
            return await load, killing, killed

        calls, killing, killed = asyncio.run(go())
        out = lab.haproxy.first_change(victim.index, "DOWN", after=killing)
        assert out is not None, "HAProxy never took the killed replica out"

        # HAProxy logs a request once it has sent the answer, so its log may trail its
        # counters: wait until every request the survivors got is logged.
        def logged_as_counted() -> bool:
            logged = Counter(r.server for r in lab.haproxy.requests())
            return all(
                lab.haproxy.counters(r.index)["stot"] == logged[server_name(r.index)]
                for r in lab.replicas
                if r is not victim
            )

        eventually(logged_as_counted, 10, "HAProxy's log caught up with its counters")
        counts = [lab.haproxy.counters(r.index) for r in lab.replicas]
        requests = lab.haproxy.requests()
    failed = [c for c in calls if not c.ok]
    survivors = [c for c in calls if c.replica not in (None, victim.index)]
    # Every call HAProxy sent to another replica succeeded, before and after the kill; by
    # its counters, each request it sent them got an answer, and all were 200.
    assert {c.replica for c in survivors} == {1, 2}
    assert all(c.ok for c in survivors), [c for c in survivors if not c.ok][:3]
    assert any(c.start > out.time + 1.0 for c in survivors)
    for count in counts[1:]:
        assert count["eresp"] == count["econ"] == count["srv_abrt"] == 0, count
        assert count["stot"] == count["hrsp_2xx"], count
    # Only calls in progress on the killed replica failed (one per client at most). The
    # client got HAProxy's 502 or a cut answer (both logged, as sent to the victim), or, for
    # a second request on a keep-alive connection, a closed connection, which HAProxy does
    # not log: as many of those as requests HAProxy counts as sent to the victim, not moved
    # to another replica, and absent from its log.
    victim_counts = counts[victim.index]
    log = {r.request_id: r for r in requests}  # the same moment as the counters
    assert all(log[c.request_id].replica == victim.index for c in failed if c.request_id in log)
    logged = [r for r in requests if r.server == server_name(victim.index)]
    unlogged = victim_counts["stot"] - victim_counts["wredis"] - len(logged)
    dropped = [c for c in failed if c.request_id not in log]
    assert unlogged == len(dropped), (
        f"HAProxy: {unlogged} requests to it unlogged, "
        + " ".join(f"{k}={victim_counts[k]}" for k in COUNTERS)
        + f"; failed: {[(c.status, c.detail, round(c.start - killed, 3), c.route) for c in failed]}"
    )
    assert len(failed) <= CLIENTS
    assert all(c.start < killed for c in failed), failed[:3]
    for call in failed:
        assert call.status in (None, 502), call
        assert call.status is None or call.detail.startswith("bad_gateway: "), call
    # A call routed to it after the kill met a refused connection and went on to another
    # replica (retry-on conn-failure, redispatch): it succeeded.
    moved = [c for c in calls if c.route is not None and c.route.redispatched]
    assert victim_counts["wredis"] == len(moved)
    assert all(c.ok and c.replica != victim.index for c in moved), moved[:3]
    assert not [c for c in calls if c.replica == victim.index and c.start > out.time]
    after = [c for c in survivors if c.start > out.time]
    print(
        f"\nSIGKILL of replica {victim.index}: {len(failed)} failed calls, all in progress on it; "
        f"HAProxy took it out {(out.time - killing) * 1000:.0f} ms after the kill "
        f"({out.why.split(',')[0]}); {len(moved)} calls sent to it after the kill were retried "
        f"on another replica, all ok; {len(survivors)} calls on the survivors, all ok; after the "
        f"kill: {figures(after, span(after)).line('survivors')}"
    )


STALE_SECONDS = 3.0  # MCP_REVOCATION_STALE_SECONDS for these tests (default 30)
OUTAGE_SECONDS = STALE_SECONDS + 2.5
FRESH_WINDOW = STALE_SECONDS - 2 * REVOCATION_REFRESH_SECONDS - 0.25
"""How long after Redis stops a replica surely still answers from its view: the last sync
before the stop may be up to one refresh and a read older than the stop."""
SICK_CLIENTS = 6


async def logged(
    haproxy: HAProxy, index: int, state: str, after: float, timeout: float = 15.0
) -> float:
    """When HAProxy logged replica `index` going `state` after `after` (waiting for it)."""
    deadline = time.monotonic() + timeout
    while (change := haproxy.first_change(index, state, after)) is None:
        assert time.monotonic() < deadline, f"replica {index} not {state} after {timeout} s"
        await asyncio.sleep(0.05)
    return change.time


def test_a_replica_answering_503_on_healthz_is_taken_out_then_put_back(tmp_path: Path) -> None:
    with cluster(tmp_path, stale_seconds=STALE_SECONDS) as lab:
        own = start_redis(tmp_path, persistent=False, name="redis-sick")
        try:
            sick = lab.replicas[0]
            lab.start(sick, MCP_REVOCATION_URL=own.url)  # its own Redis, which will stop
            tokens = [
                (f"h{n}", lab.issuer.mint(["web_search"], sub=f"h{n}")) for n in range(SICK_CLIENTS)
            ]

            async def go() -> tuple[list[Call], float, float, float, float]:
                stop = asyncio.Event()
                load = asyncio.create_task(drive(lab.haproxy, tokens, 60, stop=stop, pause=PAUSE))
                try:
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(own.stop)
                    cut = time.time()
                    out = await logged(lab.haproxy, sick.index, "DOWN", cut)
                    await asyncio.sleep(1.0)  # out of rotation for a while
                    await asyncio.to_thread(own.start)
                    back = time.time()
                    put_back = await logged(lab.haproxy, sick.index, "UP", back)
                    await asyncio.sleep(1.0)
                finally:
                    stop.set()
                return await load, cut, out, back, put_back

            calls, cut, out, back, put_back = asyncio.run(go())
        finally:
            own.stop()
    (down,) = [c for c in lab.haproxy.changes() if c.time == out]
    assert "code: 503" in down.why, down.why  # its /healthz answered 503, not a lost connection
    assert out > cut + FRESH_WINDOW
    others = [c for c in calls if c.replica != sick.index]
    mine = [c for c in calls if c.replica == sick.index]
    assert {c.replica for c in others} == {1, 2}
    assert all(c.ok for c in others), [c for c in others if not c.ok][:3]
    # From its Redis stopping until HAProxy took it out, the sick replica answered its own
    # 503 (it refuses tokens it cannot check); out of rotation it got no call at all ...
    failed = [c for c in mine if not c.ok]
    assert all(c.status == 503 for c in failed), failed[:3]
    assert all(c.detail.startswith("revocation_unavailable: ") for c in failed)
    assert all(cut + FRESH_WINDOW < c.end and c.start < out for c in failed), failed[:3]
    assert not [c for c in mine if out < c.start and c.end < put_back]
    # ... and once back in, it served again.
    again = [c for c in mine if c.start > put_back]
    assert again
    assert all(c.ok for c in again), [c for c in again if not c.ok][:3]
    print(
        f"\nreplica {sick.index}'s Redis stopped (MCP_REVOCATION_STALE_SECONDS={STALE_SECONDS:g}):"
        f" HAProxy took it out {out - cut:.2f} s later on /healthz 503, after {len(failed)} calls "
        f"got its own 503; Redis back: in rotation again {put_back - back:.2f} s later; "
        f"{len(others)} calls on the other replicas, all ok"
    )


async def probe(
    haproxy: HAProxy, token: str, label: str, stop: asyncio.Event, interval: float = 0.02
) -> list[Call]:
    """Call through HAProxy with `token` until `stop`, one call at a time."""
    calls: list[Call] = []
    async with http_client(haproxy.base, connections=1) as http:
        while not stop.is_set():
            calls.append(await send(http, label, token, tools_call("web_search", SEARCH)))
            await asyncio.sleep(interval)
    return await asyncio.to_thread(routed, haproxy, calls)


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

        async def go() -> tuple[list[Call], list[Call], float, float, list[Call]]:
            await on_every_replica(lab.haproxy, revoked, refused=True, timeout=5)
            stop = asyncio.Event()
            load = asyncio.create_task(drive(lab.haproxy, [("good", good)] * 4, 60, stop=stop))
            probes = asyncio.create_task(probe(lab.haproxy, revoked, "revoked", stop))
            try:
                return await outage(stop, load, probes)
            finally:
                stop.set()
                await asyncio.gather(load, probes, return_exceptions=True)

        async def outage(
            stop: asyncio.Event, load: asyncio.Task[list[Call]], probes: asyncio.Task[list[Call]]
        ) -> tuple[list[Call], list[Call], float, float, list[Call]]:
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
            recovered = await on_every_replica(lab.haproxy, good, refused=False, timeout=10)
            await asyncio.sleep(1.0)
            stop.set()
            return await load, await probes, down, up, recovered

        goods, revoked_probes, down, up, recovered = asyncio.run(go())
        # The revocation known before the outage was enforced throughout, on every replica.
        assert {c.replica for c in revoked_probes} == {0, 1, 2}
        assert all(c.status == 401 and c.detail.startswith("revoked: ") for c in revoked_probes)
        # Within the stale window the replicas kept answering from their view ...
        fresh = [c for c in goods if down <= c.start < down + FRESH_WINDOW]
        assert fresh
        assert all(c.ok for c in fresh), [c for c in fresh if not c.ok][:3]
        # ... and past it no token they cannot check was accepted: a clear 503 instead.
        closed = [c for c in goods if down + STALE_SECONDS < c.start < up]
        assert {c.replica for c in closed} == {0, 1, 2}
        assert all(c.status == 503 for c in closed), [c for c in closed if c.status != 503][:3]
        assert all(c.detail.startswith("revocation_unavailable: ") for c in closed)
        # Every replica failed its health check (503), so HAProxy had none in rotation and sent
        # the calls to the same replicas listed as unchecked backups: clients got the replicas'
        # own 503 that says why, not an error page of HAProxy's ("no_replica: ...").
        outs = [lab.haproxy.first_change(r.index, "DOWN", after=down) for r in lab.replicas]
        assert all(c is not None and "code: 503" in c.why for c in outs), outs
        all_out = max(c.time for c in outs if c is not None)
        assert all_out < up
        by_backups = [c for c in closed if c.start > all_out]
        assert by_backups
        assert all(c.route is not None and c.route.server.endswith("_backup") for c in by_backups)
        first_503 = min(c.start for c in goods if c.status == 503)
        last_ok = max(c.end for c in goods if c.ok and c.start < up)
        # Redis back: every replica serves again without a restart, and the revocation
        # made before the outage is enforced and back in the (restarted, empty) Redis.
        recovery = [c.end - up for c in recovered]
        assert all(c.ok for c in goods if c.start > up + max(recovery))
        with contextlib.closing(lab.redis_client()) as client:
            assert client.zscore(PREFIX + "jti", jti) is not None
        after = asyncio.run(on_every_replica(lab.haproxy, revoked, refused=True, timeout=1))
        assert all(c.detail.startswith("revoked: ") for c in after)
        # New revocations flow again.
        done = lab.issuer.cli("token", "revoke", late)
        assert done.returncode == 0, done.stderr
        asyncio.run(on_every_replica(lab.haproxy, late, refused=True, timeout=PROPAGATION_SECONDS))
        assert lab.running() == pids
        print(
            f"\nRedis stopped (MCP_REVOCATION_STALE_SECONDS={STALE_SECONDS:g}): last accepted call "
            f"ended {last_ok - down:.2f} s after, first 503 revocation_unavailable at "
            f"{first_503 - down:.2f} s; every replica out of HAProxy's rotation by "
            f"{all_out - down:.2f} s, {len(by_backups)} calls then went through the backup entries "
            f"and got the replicas' own 503; revoked token refused throughout "
            f"({len(revoked_probes)} probes); Redis restarted empty: every replica serving "
            f"again within {max(recovery) * 1000:.0f} ms, no restart, revocation written back"
        )
