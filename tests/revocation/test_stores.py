"""What every shared store does, on SQLite and a real Redis: incremental reads, resuming."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.revocation import Denylist, SyncedDenylist
from mcp_warden.tokens.revocation.store import Entries, Store
from tests.support.revocation import settings_for

Open = Callable[..., Denylist]


def test_reads_are_incremental(store_pair: tuple[Store, Store]) -> None:
    writer, reader = store_pair
    now = int(time.time())
    writer.put(Entries(jtis={f"j{i}": now + 60 for i in range(50)}), now)
    assert len(reader.load(now)) == 50
    assert reader.changes() == Entries()
    writer.put(Entries(jtis={"new": now + 60}, subs={"alice": now}), now)
    assert reader.changes() == Entries(jtis={"new": now + 60}, subs={"alice": now})
    assert reader.changes() == Entries()


def test_load_skips_expired_entries(store_pair: tuple[Store, Store]) -> None:
    writer, reader = store_pair
    now = int(time.time())
    writer.put(Entries(jtis={"old": now - 100, "live": now + 60}), now - 200)
    assert reader.load(now) == Entries(jtis={"live": now + 60})


def test_after_a_failed_read_the_reader_goes_on_when_nothing_was_lost(
    store_pair: tuple[Store, Store],
) -> None:
    writer, reader = store_pair
    now = int(time.time())
    writer.put(Entries(jtis={"a": now + 60}), now)
    reader.load(now)
    writer.put(Entries(jtis={"b": now + 60}), now)
    assert reader.changes(resume=True) == Entries(jtis={"b": now + 60})


def test_a_restore_reaches_every_reader(store_pair: tuple[Store, Store]) -> None:
    writer, reader = store_pair
    now = int(time.time())
    reader.load(now)
    writer.restore(Entries(jtis={"a": now + 60}, subs={"alice": now}), now)
    changes = reader.changes()
    if changes is None:  # Redis: a restore makes every reader reload
        changes = reader.load(now)
    assert changes == Entries(jtis={"a": now + 60}, subs={"alice": now})


def test_a_revoke_only_process_neither_loads_nor_vouches(shared_url: str, opened: Open) -> None:
    now = int(time.time())
    follower = opened(settings_for(shared_url))
    follower.revoke_jti("earlier", now + 60)
    revoker = opened(settings_for(shared_url), follow=False)
    assert len(revoker) == 0  # type: ignore[arg-type]
    revoker.revoke_sub("alice", now)
    assert revoker.is_revoked("any", "alice", now)
    with pytest.raises(TokenError) as caught:
        revoker.is_revoked("any", "bob", now)
    assert caught.value.reason == "revocation_unavailable"
    assert isinstance(follower, SyncedDenylist)
    follower.sync()
    assert follower.is_revoked("any", "alice", now)
