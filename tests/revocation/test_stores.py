"""What every shared store does, on SQLite and a real Redis: incremental reads, resuming."""

from __future__ import annotations

import time

from mcp_warden.tokens.revocation_sync import Entries, Store


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
