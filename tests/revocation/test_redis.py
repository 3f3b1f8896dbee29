"""The Redis store against a real redis-server: incremental reads, purging, resets, outages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from mcp_warden.demo.harness import free_port
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.revocation import Denylist, RevocationStoreError, SyncedDenylist
from mcp_warden.tokens.revocation.redis import PREFIX
from mcp_warden.tokens.revocation.store import Entries, Store
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer
from tests.support.revocation import LEEWAY, MAX_TTL, open_store, settings_for
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

Open = Callable[..., Denylist]


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def pair(redis_server: RedisServer) -> Iterator[tuple[Store, Store]]:
    writer, reader = open_store(redis_server.url), open_store(redis_server.url)
    yield writer, reader
    writer.close()
    reader.close()


def test_after_a_failed_read_a_replaced_data_set_means_a_reload(
    pair: tuple[Store, Store], client: redis.Redis
) -> None:
    writer, reader = pair
    now = int(time.time())
    writer.put(Entries(jtis={"a": now + 60}), now)
    reader.load(now)
    client.flushdb()
    writer.put(Entries(jtis={"b": now + 60}), now)
    assert reader.changes(resume=True) is None
    assert reader.changes() is None  # the epoch is gone as well


def test_after_a_failed_read_a_stream_trimmed_past_the_cursor_means_a_reload(
    redis_server: RedisServer,
) -> None:
    writer = open_store(redis_server.url, max_ttl=1, leeway=0)
    reader = open_store(redis_server.url, max_ttl=1, leeway=0)
    try:
        now = int(time.time())
        writer.put(Entries(jtis={"a": now + 1}), now)
        reader.load(now)
        writer.put(Entries(jtis={"b": now + 1}), now)
        time.sleep(1.1)
        writer.put(Entries(jtis={"c": now + 2}), now)  # trims a and b: b was never read
        assert reader.changes(resume=True) is None
    finally:
        writer.close()
        reader.close()


def test_a_redis_that_stops_answering_for_a_while_costs_no_reload(
    redis_server: RedisServer, client: redis.Redis, opened: Open, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(redis_server.url, revocation_refresh_seconds=0.1)
    writer, reader = opened(settings), opened(settings)
    assert isinstance(reader, SyncedDenylist)
    assert reader.reloads == 1
    now = int(time.time())
    client.client_pause(5000)  # every command waits 5 s: the reader's reads time out
    eventually(lambda: "revocation sync failed" in caplog.text, 6.0, "a failed sync")
    time.sleep(1.5)  # the pause ends
    writer.revoke_jti("after", now + 60)
    eventually(lambda: reader.is_revoked("after", "bob", now), 3.0, "reader reads on")
    assert reader.reloads == 1


def test_writes_purge_expired_members(
    redis_server: RedisServer, client: redis.Redis, opened: Open, clock: FakeClock
) -> None:
    now = int(clock.now)
    denylist = opened(settings_for(redis_server.url), clock=clock.time)
    for i in range(100):
        denylist.revoke_jti(f"j{i}", now + 10)
    denylist.revoke_sub("alice", now)
    assert client.zcard(PREFIX + "jti") == 100

    clock.now = now + 10 + LEEWAY + 1
    denylist.revoke_jti("later", now + 200)
    assert client.zrange(PREFIX + "jti", 0, -1) == ["later"]
    assert client.zrange(PREFIX + "sub", 0, -1) == ["alice"]

    clock.now = now + MAX_TTL + LEEWAY + 1  # past every token alice had at `now`
    denylist.revoke_jti("last", int(clock.now) + 60)
    assert client.zrange(PREFIX + "jti", 0, -1) == ["last"]
    assert client.zcard(PREFIX + "sub") == 0


def test_writes_trim_the_change_stream_to_one_token_lifetime(
    redis_server: RedisServer, client: redis.Redis, opened: Open
) -> None:
    # Stream ids are Redis's own clock, so this one runs in real time with a 1 s lifetime.
    settings = settings_for(redis_server.url, token_max_ttl=1, token_leeway=0)
    denylist = opened(settings)
    now = int(time.time())
    denylist.revoke_jti("old", now + 1)
    denylist.revoke_sub("alice", now)
    assert client.xlen(PREFIX + "events") == 2
    time.sleep(1.1)
    denylist.revoke_jti("new", now + 2)
    entries = client.xrange(PREFIX + "events") or []
    assert [fields and fields["v"] for _, fields in entries] == ["new"]


def test_a_flushed_redis_gets_back_what_the_replicas_knew(
    redis_server: RedisServer, client: redis.Redis, opened: Open
) -> None:
    settings = settings_for(redis_server.url, revocation_refresh_seconds=0.1)
    first, second = opened(settings), opened(settings)
    now = int(time.time())
    first.revoke_jti("jti-1", now + 300)
    first.revoke_sub("alice", now)
    eventually(lambda: second.is_revoked("jti-1", "bob", now), 2.0, "second replica sees jti")

    client.flushdb()  # the data set is gone while the replicas keep their connections
    eventually(
        lambda: (
            client.zscore(PREFIX + "jti", "jti-1") is not None
            and client.zscore(PREFIX + "sub", "alice") is not None
        ),
        3.0,
        "replicas write their revocations back",
    )
    newcomer = opened(settings)
    assert newcomer.is_revoked("jti-1", "bob", now)
    assert newcomer.is_revoked("jti-2", "alice", now)
    assert not newcomer.is_revoked("jti-2", "bob", now)


def test_an_unreachable_redis_refuses_tokens_and_revocations(opened: Open) -> None:
    url = f"redis://:not-to-be-shown@127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    denylist = opened(settings_for(url))
    with pytest.raises(TokenError) as refused:
        denylist.is_revoked("jti-1", "alice", 0)
    assert refused.value.reason == "revocation_unavailable"
    assert "not read since start" in str(refused.value)
    with pytest.raises(RevocationStoreError) as failed:
        denylist.revoke_jti("jti-1", 2_000_000_000)
    assert "NOT recorded" in str(failed.value)
    assert time.monotonic() - start < 10.0
    for message in (str(refused.value), str(failed.value)):
        assert "not-to-be-shown" not in message
        assert "Redis at 127.0.0.1:" in message
    assert denylist.is_revoked("jti-1", "alice", 0)  # this process applies it anyway


def test_outage_keeps_known_revocations_then_fails_closed_then_recovers(
    redis_server: RedisServer, opened: Open
) -> None:
    stale = 2.0
    settings = settings_for(
        redis_server.url, revocation_refresh_seconds=0.1, revocation_stale_seconds=stale
    )
    writer, replica = opened(settings), opened(settings)
    now = int(time.time())
    writer.revoke_jti("before", now + 300)
    writer.revoke_sub("alice", now)
    eventually(lambda: replica.is_revoked("before", "bob", now), 2.0, "replica sees jti")

    assert isinstance(replica, SyncedDenylist)
    synced = time.monotonic()
    replica.sync()  # the window runs from the last successful sync: at least from `synced`
    redis_server.stop()
    stopped = time.monotonic()
    # Within the window: known revocations enforced, other tokens still answered.
    assert replica.is_revoked("before", "bob", now)
    assert replica.is_revoked("other", "alice", now)
    assert not replica.is_revoked("other", "bob", now)
    with pytest.raises(RevocationStoreError, match=r"NOT recorded in Redis at 127\.0\.0\.1"):
        writer.revoke_jti("during", now + 300)

    def refused() -> bool:
        try:
            replica.is_revoked("other", "bob", now)
        except TokenError:
            return True
        return False

    eventually(refused, stale + 3.0, "unchecked tokens refused after the window")
    window = time.monotonic() - synced
    with pytest.raises(TokenError) as caught:
        replica.is_revoked("other", "bob", now)
    assert caught.value.reason == "revocation_unavailable"
    assert f"cannot reach Redis at 127.0.0.1:{redis_server.port} since" in str(caught.value)
    assert "refusing tokens until it is back" in str(caught.value)
    print(
        f"redis down: tokens refused {window:.2f} s after the last sync, "
        f"{time.monotonic() - stopped:.2f} s after the stop (window {stale} s)"
    )
    assert window >= stale
    assert replica.is_revoked("before", "bob", now)  # still refused, as revoked

    redis_server.start()  # same port, empty: no persistence in the tests
    restarted = time.monotonic()

    def answers() -> bool:
        try:
            return not replica.is_revoked("other", "bob", now)
        except TokenError:
            return False

    eventually(answers, 5.0, "replica recovers without a restart")
    print(f"redis back: replica answering again after {time.monotonic() - restarted:.2f} s")
    assert replica.is_revoked("before", "bob", now)
    assert replica.is_revoked("other", "alice", now)

    # The revocations from before the outage (and the one only the writer applied during it)
    # were written back: a replica started now knows them.
    newcomer = opened(settings)
    eventually(lambda: newcomer.is_revoked("during", "bob", now), 3.0, "newcomer sees 'during'")
    assert newcomer.is_revoked("before", "bob", now)
    assert newcomer.is_revoked("other", "alice", now)

    writer.revoke_jti("after", now + 300)
    seen = eventually(lambda: replica.is_revoked("after", "bob", now), 1.0, "new revocation")
    print(f"redis back: a new revocation reached the replica in {seen * 1000:.0f} ms")
