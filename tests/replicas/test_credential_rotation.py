"""`mcp-warden cred rotate` of the upstream key while clients keep calling every replica.

The runbook's order: the vendor accepts the old and the new key, the operator
rotates (`cred rotate --verify` tries the new key upstream first), the vendor
then drops the old key. Every replica reads the store on each call (a stat,
re-read when the file changed), so none restarts and none fails a call.
Each replica has its own stub, and a stub logs the key of every request in
arrival order: that is each replica's own sequence of keys.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mcp_warden.demo.harness import run_cli
from mcp_warden.demo.stub import key_id
from tests.support.replicas import Call, cluster, drive
from tests.support.server import CREDENTIAL
from tests.support.stub import new_api_key

pytestmark = pytest.mark.slow

SEARCH_ENDPOINT = "/api/v2/google"  # what web_search calls (the --verify check calls usage)
CLIENTS = 3
PAUSE = 0.02  # each client's think time: keeps each stub's request log (1000 entries) whole


def test_cred_rotate_under_load_fails_no_call_and_every_replica_switches_at_once(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as lab:
        pids = lab.running()
        old, new = lab.api_key, new_api_key()
        token = lab.issuer.mint_cli(["web_search"], sub="rotation-client")
        lab.set_upstream_keys(old, new)  # the vendor issued a second key
        for replica in lab.replicas:
            replica.stub.reset()
        verify_env = {**lab.env, "SCAVIO_BASE_URL": lab.replicas[0].stub.url}

        async def go() -> tuple[list[Call], list[int], list[int], float, float]:
            done = asyncio.Event()
            load = asyncio.create_task(
                drive(lab.haproxy, [("client", token)] * CLIENTS, 30, stop=done, pause=PAUSE)
            )
            await asyncio.sleep(1.0)
            before = [r.stub.calls(SEARCH_ENDPOINT) for r in lab.replicas]
            started = time.time()
            rotated = await asyncio.to_thread(
                run_cli,
                ("cred", "rotate", CREDENTIAL, "--verify"),
                verify_env,
                input=new + "\n",
            )
            assert rotated.returncode == 0, rotated.stderr
            assert new not in rotated.stdout + rotated.stderr
            finished = time.time()
            after = [r.stub.calls(SEARCH_ENDPOINT) for r in lab.replicas]
            await asyncio.sleep(1.0)
            lab.set_upstream_keys(new)  # the vendor revokes the old key
            await asyncio.sleep(1.0)
            done.set()
            return await load, before, after, started, finished

        calls, before, after, started, finished = asyncio.run(go())
        old_id, new_id = key_id(old), key_id(new)
        print(f"\ncred rotate --verify took {(finished - started) * 1000:.0f} ms (CLI process)")
        assert calls
        assert all(c.ok for c in calls), [c for c in calls if not c.ok][:3]
        late_old = 0
        for replica, b, a in zip(lab.replicas, before, after, strict=True):
            stats = replica.stub.stats()
            assert stats["total"] <= 1000, "the stub's request log overflowed"
            keys = [r["key"] for r in stats["requests"] if r["endpoint"] == SEARCH_ENDPOINT]
            statuses = [r["status"] for r in stats["requests"]]
            assert set(statuses) == {200}
            assert set(keys) == {old_id, new_id}
            # Before the rotation started: the old key only; then the new one. A call that
            # reached the stub after `cred rotate` returned and still carried the old key loaded
            # it before the file was replaced: it was in flight then (one at most per client).
            assert set(keys[:b]) == {old_id}
            stragglers = keys[a:].count(old_id)
            late_old += stragglers
            print(
                f"replica {replica.index}: {keys.count(old_id)} calls with the old key, "
                f"{keys.count(new_id)} with the new one (first at call {keys.index(new_id) + 1}); "
                f"{stragglers} old-key calls arrived after rotate returned"
            )
        assert late_old <= CLIENTS  # at most one call per client was in flight
        # Every client call reached the upstream once; --verify asked stub 0 with the new key.
        assert sum(r.stub.calls(SEARCH_ENDPOINT) for r in lab.replicas) == len(calls)
        verify = [
            r for r in lab.replicas[0].stub.stats()["requests"] if r["endpoint"] != SEARCH_ENDPOINT
        ]
        assert [r["key"] for r in verify] == [new_id]
        assert lab.running() == pids
