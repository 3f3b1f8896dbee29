"""The DPoP replay cache on every backend: once per (jkt, jti), across processes, fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.tokens.dpop import DpopError
from mcp_warden.tokens.replay import MemoryReplayCache, open_replay_cache, replay_key
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer


def test_first_use_then_replayed(any_url: str, clock: FakeClock) -> None:
    cache = open_replay_cache(Settings(revocation_url=any_url), clock=clock.time)
    other = open_replay_cache(Settings(revocation_url=any_url), clock=clock.time)
    try:
        until = clock.now + 60
        assert cache.first_use("k1", "j1", until)
        assert not cache.first_use("k1", "j1", until)
        assert cache.first_use("k2", "j1", until)  # same jti, another key: another proof
        assert cache.first_use("k1", "j2", until)
        if any_url != "memory://":  # a second connection (another replica) sees it too
            assert not other.first_use("k1", "j1", until)
    finally:
        cache.close()
        other.close()


def test_expired_entry_may_be_reused(clock: FakeClock, tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path / 'r.db'}"):
        cache = open_replay_cache(Settings(revocation_url=url), clock=clock.time)
        assert cache.first_use("k", "j", clock.now + 60)
        clock.now += 61
        assert cache.first_use("k", "j", clock.now + 60)
        cache.close()


def test_memory_bounded_fails_closed(clock: FakeClock) -> None:
    cache = MemoryReplayCache(limit=2, clock=clock.time)
    assert cache.first_use("k", "1", clock.now + 10)
    assert cache.first_use("k", "2", clock.now + 10)
    with pytest.raises(DpopError) as info:
        cache.first_use("k", "3", clock.now + 10)
    assert info.value.reason == "replay_unavailable"
    clock.now += 11  # the old entries expire: room again
    assert cache.first_use("k", "3", clock.now + 10)


def test_key_separates_members() -> None:
    assert replay_key("a", "b\x00c") != replay_key("a\x00b", "c")
    assert len(replay_key("k", "j" * 256)) == 32


@pytest.mark.slow
def test_redis_down_fails_closed(redis_server: RedisServer) -> None:
    cache = open_replay_cache(Settings(revocation_url=redis_server.url))
    assert cache.first_use("k", "j", 2e9)
    redis_server.stop()
    with pytest.raises(DpopError) as info:
        cache.first_use("k", "j2", 2e9)
    assert info.value.reason == "replay_unavailable"
    cache.close()


def test_sqlite_unwritable_fails_closed(tmp_path: Path, clock: FakeClock) -> None:
    cache = open_replay_cache(
        Settings(revocation_url=f"sqlite:///{tmp_path / 'r.db'}"), clock=clock.time
    )
    cache.close()  # a closed connection: every statement fails
    with pytest.raises(DpopError) as info:
        cache.first_use("k", "j", clock.now + 60)
    assert info.value.reason == "replay_unavailable"
