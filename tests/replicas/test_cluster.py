"""Three replicas behind HAProxy, one Redis, one issuer apart: tokens from `token mint` work on
every replica, and `token revoke` (jti, sub) reaches every replica within a second.

One cluster for the module: these tests only add revocations for their own tokens.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator

import pytest

from mcp_warden.demo.harness import call_http
from tests.support.replicas import SEARCH, Call, Cluster, cluster, jti_and_exp, on_every_replica
from tests.support.server import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cluster")) as lab:
        yield lab


def test_cli_minted_tokens_work_on_every_replica_through_the_mcp_client(lab: Cluster) -> None:
    lab.check_no_private_keys()
    token = lab.issuer.mint_cli(["web_search"], sub="alice")
    for replica in lab.replicas:
        before = replica.stub.calls()
        with lab.haproxy.only([replica.index]):  # the others drained through the runtime API
            result = run(functools.partial(call_http, lab.haproxy.url, token, "web_search", SEARCH))
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert len(result.structured_content["results"]) == 5
        assert replica.stub.calls() == before + 1


def propagation(lab: Cluster, token: str, *revoke: str) -> list[float]:
    """Run `mcp-warden token revoke ARGS` while calling through HAProxy with `token`.

    Returns, per replica, the seconds from the revocation's write to Redis (its
    stream entry id, Redis's clock: the same host) to the end of the first
    refused call: an upper bound of that replica's propagation time.
    """

    async def go() -> list[Call]:
        accepted = await on_every_replica(lab.haproxy, token, refused=False, timeout=5)
        assert all(c.ok for c in accepted)
        polls = on_every_replica(lab.haproxy, token, refused=True, timeout=10)
        done, refusals = await asyncio.gather(asyncio.to_thread(lab.issuer.cli, *revoke), polls)
        assert done.returncode == 0, done.stderr
        return refusals

    refusals = asyncio.run(go())
    written = lab.last_revocation_time()
    for call in refusals:
        assert call.status == 401
        assert call.detail.startswith("revoked: "), call.detail
    return [call.end - written for call in refusals]


def test_revoking_a_jti_reaches_every_replica_within_a_second(lab: Cluster) -> None:
    token = lab.issuer.mint_cli(["web_search"], sub="carol")
    jti, exp = jti_and_exp(token)
    times = propagation(lab, token, "token", "revoke", "--jti", jti, "--exp", str(exp))
    print(f"\nrevoke --jti: per replica {fmt(times)}; worst {max(times) * 1000:.0f} ms")
    assert max(times) < 1.0


def test_revoking_a_sub_reaches_every_replica_within_a_second(lab: Cluster) -> None:
    token = lab.issuer.mint_cli(["web_search"], sub="dave")
    other = lab.issuer.mint_cli(["web_search"], sub="erin")
    times = propagation(lab, token, "token", "revoke", "--sub", "dave")
    print(f"\nrevoke --sub: per replica {fmt(times)}; worst {max(times) * 1000:.0f} ms")
    assert max(times) < 1.0
    accepted = asyncio.run(on_every_replica(lab.haproxy, other, refused=False, timeout=1))
    assert all(call.ok for call in accepted)


def fmt(seconds: list[float]) -> str:
    return ", ".join(f"{s * 1000:.0f} ms" for s in seconds)
