"""Freshness, timed by an injected monotonic clock: the stale window with no sleeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_warden.server.http import revocations_checkable
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.revocation import MemoryDenylist, RevocationStoreError, SyncedDenylist
from mcp_warden.tokens.revocation.sqlite import SqliteStore
from mcp_warden.tokens.revocation.store import Entries, Store
from tests.support.clock import FakeClock
from tests.support.revocation import LEEWAY, MAX_TTL

STALE = 30.0


class Switchable:
    """A real store that fails every call while `down` (an outage, without a network)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False

    @property
    def description(self) -> str:
        return self.inner.description

    def load(self, now: int) -> Entries:
        self._check()
        return self.inner.load(now)

    def changes(self, *, resume: bool = False) -> Entries | None:
        self._check()
        return self.inner.changes(resume=resume)

    def put(self, entries: Entries, now: int) -> None:
        self._check()
        self.inner.put(entries, now)

    def restore(self, entries: Entries, now: int) -> None:
        self._check()
        self.inner.restore(entries, now)

    def close(self) -> None:
        self.inner.close()

    def _check(self) -> None:
        if self.down:
            raise RevocationStoreError(f"cannot read {self.description}: down for the test")


@pytest.fixture
def store(tmp_path: Path) -> Switchable:
    return Switchable(SqliteStore(tmp_path / "r.db", max_ttl=MAX_TTL, leeway=LEEWAY))


@pytest.fixture
def synced(store: Switchable, clock: FakeClock) -> Iterator[Callable[..., SyncedDenylist]]:
    """SyncedDenylist on `store` with both clocks faked, closed when the test ends."""
    opened: list[SyncedDenylist] = []

    def open_(*, follow: bool = True) -> SyncedDenylist:
        # A refresh of an hour keeps the thread out of the way: the test calls sync() itself.
        denylist = SyncedDenylist(
            store,
            max_ttl=MAX_TTL,
            leeway=LEEWAY,
            refresh=3600.0,
            stale=STALE,
            clock=clock.time,
            monotonic=clock.monotonic,
            follow=follow,
        )
        opened.append(denylist)
        return denylist

    yield open_
    for denylist in opened:
        denylist.close()


def test_fresh_for_the_stale_window_after_the_last_sync_then_refusing(
    synced: Callable[..., SyncedDenylist], store: Switchable, clock: FakeClock
) -> None:
    denylist = synced()
    denylist.revoke_jti("known", 2_000_000_000)
    store.down = True
    clock.mono += STALE - 0.5
    with pytest.raises(RevocationStoreError):
        denylist.sync()
    assert denylist.fresh()
    assert revocations_checkable(denylist)
    assert not denylist.is_revoked("other", "bob", 0)

    clock.mono += 0.5  # STALE seconds after the last successful sync
    assert not denylist.fresh()
    assert not revocations_checkable(denylist)  # /healthz: 503
    with pytest.raises(TokenError) as refused:
        denylist.is_revoked("other", "bob", 0)
    assert refused.value.reason == "revocation_unavailable"
    assert f"since {STALE:.0f} s;" in str(refused.value)
    assert denylist.is_revoked("known", "bob", 0)  # still refused, as revoked

    store.down = False
    denylist.sync()
    assert denylist.fresh()
    assert not denylist.is_revoked("other", "bob", 0)


def test_a_store_down_at_start_is_never_fresh(
    synced: Callable[..., SyncedDenylist], store: Switchable, clock: FakeClock
) -> None:
    store.down = True
    unread = synced()
    assert not unread.fresh()
    clock.mono += 7
    with pytest.raises(TokenError, match=r"since 7 s \(not read since start\)"):
        unread.is_revoked("any", "bob", 0)


def test_a_revoke_only_process_is_never_fresh(synced: Callable[..., SyncedDenylist]) -> None:
    assert not synced(follow=False).fresh()


def test_memory_is_always_fresh() -> None:
    assert MemoryDenylist().fresh()
