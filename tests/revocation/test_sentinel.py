"""Redis Sentinel with real processes: TLS and ACL users end to end, and confirmed writes (WAIT).

A primary, a replica and three redis-sentinels (tests.support.redis_server);
the CLI runs as a real process on the `rediss+sentinel://` URL. The failover
itself, under load with `serve` replicas, is in test_sentinel_failover.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_warden.demo.harness import cli_env, run_cli
from mcp_warden.redisconn import Unconfirmed, confirm, connect
from mcp_warden.tokens.revocation.redis import PREFIX
from tests.support.cli import error_line
from tests.support.redis_server import Access, RedisServer, SentinelTopology, sentinel_topology
from tests.support.tls import make_pki

pytestmark = pytest.mark.slow

DATA_PASSWORD = "data-secret-pw"
SENTINEL_PASSWORD = "sentinel-secret-pw"
EXP = 2**31


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """TLS everywhere, the data nodes' default user off (ACL user `warden`), the
    Sentinels' too (ACL user `watch`)."""
    root = tmp_path_factory.mktemp("sentinel")
    access = Access(
        pki=make_pki(root),
        user="warden",
        password=DATA_PASSWORD,
        sentinel_user="watch",
        sentinel_password=SENTINEL_PASSWORD,
    )
    with sentinel_topology(root / "topology", access=access) as topology:
        yield topology


def _env(topology: SentinelTopology, tmp_path: Path, **extra: str) -> dict[str, str]:
    return cli_env(
        {**topology.env(), "MCP_CLIENTS_URL": topology.url, "MCP_KEYS_DIR": str(tmp_path)},
        **extra,
    )


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert DATA_PASSWORD not in text
        assert SENTINEL_PASSWORD not in text


def test_token_revoke_over_tls_sentinels_with_acl_users_is_on_the_replica_when_it_returns(
    secured: SentinelTopology, tmp_path: Path
) -> None:
    done = run_cli(
        ["token", "revoke", "--jti", "tls-acl", "--exp", str(EXP)], _env(secured, tmp_path)
    )
    assert done.returncode == 0, done.stderr
    ports = ",".join(f"127.0.0.1:{s.port}" for s in secured.sentinels)
    assert f"in Redis service warden/0 via Sentinels {ports} (TLS)" in done.stderr
    _no_secret(done.stdout, done.stderr)
    # WAIT 1 returned: the replica holds it already, no polling needed.
    with contextlib.closing(secured.client(secured.nodes[1])) as replica:
        assert replica.zscore(PREFIX + "jti", "tls-acl") == EXP


def test_clients_add_over_sentinels_is_on_the_replica_when_it_returns(
    secured: SentinelTopology, tmp_path: Path
) -> None:
    done = run_cli(["clients", "add", "bot", "--tools", "web_search"], _env(secured, tmp_path))
    assert done.returncode == 0, done.stderr
    client_id = json.loads(done.stdout)["client_id"]
    with contextlib.closing(secured.client(secured.nodes[1])) as replica:
        assert replica.hexists("mcp-warden:clients:records", client_id)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"MCP_REDIS_SENTINEL_PASSWORD": "wrong-pw"}, "invalid username-password pair"),
        ({"MCP_REDIS_PASSWORD": "wrong-pw"}, "invalid username-password pair"),
        ({"SSL_CERT_FILE": "/dev/null"}, "certificate verify failed"),
    ],
)
def test_a_wrong_password_or_an_untrusted_certificate_is_one_line_without_the_secret(
    secured: SentinelTopology, tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    done = run_cli(["token", "revoke", "--jti", "refused"], _env(secured, tmp_path, **change))
    line = error_line(done, 1, "NOT recorded", expected)
    _no_secret(line)


def test_a_plain_url_to_tls_sentinels_fails_closed(
    secured: SentinelTopology, tmp_path: Path
) -> None:
    env = _env(secured, tmp_path)
    env["MCP_REVOCATION_URL"] = secured.url.replace("rediss+sentinel", "redis+sentinel")
    done = run_cli(["token", "revoke", "--jti", "plain"], env)
    _no_secret(error_line(done, 1, "NOT recorded", "no Sentinel names a primary for 'warden'"))


def test_without_a_replica_a_revocation_is_reported_not_confirmed(tmp_path: Path) -> None:
    """The primary takes the write (servers see it), but `token revoke` exits 1 and says so;
    with MCP_REDIS_WAIT_REPLICAS=0 it is reported done, as for a single Redis."""
    with sentinel_topology(tmp_path / "topology") as topology:
        topology.nodes[1].kill()
        env = _env(topology, tmp_path)
        done = run_cli(["token", "revoke", "--jti", "lonely", "--exp", str(EXP)], env)
        error_line(
            done,
            1,
            "the revocation of jti 'lonely' reached Redis at warden via Sentinels",
            "but is not confirmed: 0 of the 1 replica(s) MCP_REDIS_WAIT_REPLICAS asks for "
            "confirmed it within 1 s; servers reading it refuse the token, yet a failover "
            "before a replica has it would lose it: retry once the replicas are back",
        )
        with contextlib.closing(topology.client(topology.nodes[0])) as primary:
            assert primary.zscore(PREFIX + "jti", "lonely") == EXP
            assert not primary.keys(PREFIX + "confirm:*")  # the marker went with the WAIT
        done = run_cli(["clients", "add", "solo", "--tools", "web_search"], env)
        error_line(done, 1, "the change reached the client registry", "clients list")
        assert json.loads(done.stdout)["client_secret"].startswith("mcpws_")  # shown once
        env["MCP_REDIS_WAIT_REPLICAS"] = "0"
        done = run_cli(["token", "revoke", "--jti", "alone", "--exp", str(EXP)], env)
        assert done.returncode == 0, done.stderr


def test_confirm_proves_the_write_is_on_the_primary_it_waits_on(
    redis_server: RedisServer,
) -> None:
    client, _ = connect(redis_server.url)
    try:
        with pytest.raises(Unconfirmed, match="not on the current primary"):
            confirm(client, "mcp-warden:test:confirm:gone", 1)  # e.g. lost in a failover
        client.set("mcp-warden:test:confirm:here", "1")
        with pytest.raises(Unconfirmed, match="0 of the 1 replica"):
            confirm(client, "mcp-warden:test:confirm:here", 1)
        confirm(client, None, 0)  # nothing to wait for
    finally:
        client.close()
