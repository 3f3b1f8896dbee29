"""Signing-key rotation while clients keep calling: `keys new`, then `keys retire --force`.

The issuer publishes its jwks.json to the replicas by copying it into their
MCP_JWKS path (tmp + rename), as an operator's deploy would. No replica restarts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.replicas import (
    JWKS_REFRESH_SECONDS,
    Call,
    cluster,
    drive,
    figures,
    on_every_replica,
    span,
)

pytestmark = pytest.mark.slow

CLIENTS = 3
PAUSE = 0.02  # each client's think time between calls


def test_new_key_works_and_retired_key_is_refused_everywhere_without_restart(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as lab:
        pids = lab.running()
        (old_kid,) = lab.issuer.kids()
        old_token = lab.issuer.mint_cli(["web_search"], sub="old-key-client")

        async def go() -> tuple[list[Call], list[Call], float, list[float], list[float]]:
            done = asyncio.Event()
            old_load = asyncio.create_task(
                drive(lab.haproxy, [("old", old_token)] * CLIENTS, 30, stop=done, pause=PAUSE)
            )
            await asyncio.sleep(0.5)
            new = await asyncio.to_thread(lab.issuer.cli, "keys", "new")
            assert new.returncode == 0, new.stderr
            lab.issuer.publish()
            new_token = await asyncio.to_thread(
                lab.issuer.mint_cli, ["web_search"], sub="new-key-client"
            )
            minted = time.time()
            accepted = await on_every_replica(lab.haproxy, new_token, refused=False, timeout=5)
            new_load = asyncio.create_task(
                drive(lab.haproxy, [("new", new_token)] * CLIENTS, 30, stop=done, pause=PAUSE)
            )
            await asyncio.sleep(0.5)
            retire = await asyncio.to_thread(lab.issuer.cli, "keys", "retire", old_kid, "--force")
            assert retire.returncode == 0, retire.stderr
            retired = lab.issuer.publish()
            refused = await on_every_replica(lab.haproxy, old_token, refused=True, timeout=5)
            # Keep calling with both tokens for a while after the reload interval.
            await asyncio.sleep(retired + JWKS_REFRESH_SECONDS + 1.0 - time.time())
            done.set()
            return (
                await old_load,
                await new_load,
                retired,
                [c.end - minted for c in accepted],
                [c.end - retired for c in refused],
            )

        old_calls, new_calls, retired, accept_times, refuse_times = asyncio.run(go())
        print(
            f"\nnew key's token (from `token mint`) accepted by every replica within "
            f"{max(accept_times) * 1000:.0f} ms of minting"
        )
        print(
            "retired key's token refused, from publishing to the first refused call's answer: "
            + ", ".join(f"{t * 1000:.0f} ms" for t in refuse_times)
            + f" (MCP_JWKS_REFRESH_SECONDS={JWKS_REFRESH_SECONDS:g})"
        )
        # No 5xx, no dropped connection, for either key's clients.
        assert all(c.status is not None and c.status < 500 for c in old_calls + new_calls)
        assert new_calls
        assert all(c.ok for c in new_calls), [c for c in new_calls if not c.ok][:3]
        # The old key's token worked until it was retired, and no call that started more than
        # the reload interval after publishing was accepted, on any replica. (A replica stats
        # the JWKS at the first request after each interval, so such a call is always refused;
        # the figures printed above also include one call's latency under load.)
        before = [c for c in old_calls if c.end < retired]
        after = [c for c in old_calls if c.start >= retired + JWKS_REFRESH_SECONDS]
        assert before
        assert all(c.ok for c in before), [c for c in before if not c.ok][:3]
        assert {c.replica for c in after} == set(range(len(lab.replicas)))
        assert all(c.status == 401 for c in after)
        assert all(c.detail.startswith("unknown_key: ") for c in after), after[0].detail
        everything = old_calls + new_calls
        load = figures(everything, span(everything)).line("all calls")
        print(
            f"load: {len(before)} old-key calls ok before retiring, {len(after)} refused after; "
            f"{len(new_calls)} new-key calls, all ok; {load}"
        )
        assert lab.running() == pids
