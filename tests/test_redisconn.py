"""Every Redis URL form, parsed strictly into the client redis-py needs; no password in errors.

The real processes (Sentinels, TLS, ACL users, WAIT) are in tests/revocation/test_sentinel.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.connection import SSLConnection
from redis.sentinel import SentinelConnectionPool

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.issuer.registry import open_registry
from mcp_warden.redisconn import FORMS, RedisURL, connect, open_link, parse
from mcp_warden.tokens.revocation import open_denylist, store_location


def test_the_sentinel_form() -> None:
    url = "redis+sentinel://app:p%40ss@s1,s2:26380,[::1]:5/mymaster/2?sentinel_user=watch"
    assert parse(url, "X") == RedisURL(
        tls=False,
        nodes=(("s1", 26379), ("s2", 26380), ("::1", 5)),
        db=2,
        service="mymaster",
        username="app",
        password="p@ss",
        sentinel_user="watch",
        sentinel_tls=False,
    )
    assert "p@ss" not in repr(parse(url, "X"))


def test_tls_reaches_the_sentinels_too_unless_told_otherwise() -> None:
    assert parse("rediss+sentinel://s1/m", "X").sentinel_tls
    assert not parse("rediss+sentinel://s1/m?sentinel_tls=no", "X").sentinel_tls
    assert parse("redis+sentinel://s1/m?sentinel_tls=yes", "X").sentinel_tls
    assert parse("rediss+sentinel://s1/m", "X").db == 0


def _pool_kwargs(client: redis.Redis) -> dict[str, Any]:
    return dict(client.connection_pool.connection_kwargs)


def test_a_sentinel_client_asks_the_sentinels_with_their_own_credentials() -> None:
    client, where = connect(
        "rediss+sentinel://app@s1:1,s2:2/mymaster/3?sentinel_user=watch",
        password="data-pw",
        sentinel_password="sentinel-pw",
    )
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "mymaster"
        assert where == "mymaster via Sentinels s1:1,s2:2"
        kwargs = _pool_kwargs(client)
        assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (3, "app", "data-pw")
        assert issubclass(pool.connection_class, SSLConnection)  # TLS to the data nodes
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
        sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
        assert (sentinel_kwargs["username"], sentinel_kwargs["password"]) == (
            "watch",
            "sentinel-pw",
        )
        assert issubclass(sentinels[0].connection_pool.connection_class, SSLConnection)
        assert sentinel_kwargs["socket_timeout"] == kwargs["socket_timeout"] == 2.0
    finally:
        client.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://s1", "no service name"),
        ("redis+sentinel://s1/", "no service name"),
        ("redis+sentinel://s1/m/x", "the database is not a number"),
        ("redis+sentinel://s1,/m", "host"),
        ("redis+sentinel://s1:0/m", "port"),
        ("redis+sentinel://:secret-pw@s1:notaport/m", "port"),
        ("redis+sentinel://s1/m?sentinel_password=secret-pw", "an option other than"),
        ("redis+sentinel://s1/m?secret-pw", "an option other than"),
        ("redis+sentinel://s1/m?sentinel_user=a&sentinel_user=b", "given twice or empty"),
        ("redis+sentinel://s1/m?sentinel_user=", "given twice or empty"),
        ("redis+sentinel://s1/m?sentinel_tls=maybe", "sentinel_tls"),
        ("redis+sentinel://s1/m#secret-pw", "a fragment"),
        ("redis://s1,s2/0", "several hosts"),
        ("redis://s1/0?sentinel_user=a", "only Sentinel URLs take options"),
        ("redis://[::1/0", "IPv6"),
        ("redis://[::1]x/0", "IPv6"),
        ("redis://host:/0", "port"),
        ("redis+cluster://s1/0", "unknown scheme"),
    ],
)
def test_bad_urls_say_why_and_never_echo_the_url(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(url, "MCP_CLIENTS_URL")
    message = str(caught.value)
    assert message.startswith("MCP_CLIENTS_URL is not a Redis URL we accept (")
    assert reason in message
    assert message.endswith(FORMS)
    assert "secret-pw" not in message
    assert "\n" not in message


def test_every_store_takes_the_sentinel_url_and_says_so_on_bad_ones() -> None:
    settings = Settings(
        revocation_url="redis+sentinel://s1/m/0?oops", clients_url="redis+sentinel://s1"
    )
    with pytest.raises(ConfigError, match=r"^MCP_REVOCATION_URL is not a Redis URL"):
        open_denylist(settings, follow=False)
    with pytest.raises(ConfigError, match=r"^MCP_CLIENTS_URL is not a Redis URL"):
        open_registry(settings)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        (
            "redis+sentinel://app:secret-pw@s1,s2:1/mymaster/4",
            "Redis service mymaster/4 via Sentinels s1:26379,s2:1",
        ),
        ("rediss+sentinel://s1/m", "Redis service m/0 via Sentinels s1:26379 (TLS)"),
    ],
)
def test_store_location_of_a_sentinel_url(url: str, location: str) -> None:
    assert store_location(url) == location


@pytest.mark.parametrize(
    ("url", "configured", "replicas"),
    [
        ("redis+sentinel://s1/m", None, 1),
        ("redis+sentinel://s1/m", 0, 0),
        ("redis+sentinel://s1/m", 2, 2),
        ("redis://h/0", None, 0),
        ("redis://h/0", 1, 1),
    ],
)
def test_writes_wait_for_one_replica_by_default_behind_sentinels(
    url: str, configured: int | None, replicas: int
) -> None:
    link = open_link(url, Settings(redis_wait_replicas=configured), setting="X", name="n")
    link.client.close()
    assert link.replicas == replicas


def test_mcp_redis_wait_replicas_is_a_whole_number() -> None:
    assert Settings.from_env({"MCP_REDIS_WAIT_REPLICAS": "2"}).redis_wait_replicas == 2
    with pytest.raises(ConfigError, match="MCP_REDIS_WAIT_REPLICAS"):
        Settings.from_env({"MCP_REDIS_WAIT_REPLICAS": "-1"})
