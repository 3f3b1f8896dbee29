"""The SQLite store: a private WAL file, clear errors, incremental reads, purging."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mcp_warden.errors import ConfigError
from mcp_warden.tokens.revocation import Denylist, RevocationStoreError, SyncedDenylist
from mcp_warden.tokens.revocation.sqlite import SqliteStore
from mcp_warden.tokens.revocation.store import Entries
from tests.support.clock import FakeClock
from tests.support.revocation import LEEWAY, MAX_TTL, settings_for

Open = Callable[..., Denylist]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path, opened: Open) -> None:
    db = tmp_path / "revocations.db"
    denylist = opened(settings_for(f"sqlite:///{db}"))
    denylist.revoke_jti("jti-1", 2_000_000_000)
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    with closing(sqlite3.connect(db)) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_existing_loose_file_is_tightened(tmp_path: Path, opened: Open) -> None:
    db = tmp_path / "revocations.db"
    db.touch()
    db.chmod(0o644)
    opened(settings_for(f"sqlite:///{db}"))
    assert mode(db) == 0o600


def test_a_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, opened: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    opened(settings_for("sqlite:///./sub.db"))
    assert (tmp_path / "sub.db").is_file()


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for path in (tmp_path / "missing" / "r.db", not_a_dir / "r.db", tmp_path):
        with pytest.raises(RevocationStoreError) as caught:
            SqliteStore(path, max_ttl=MAX_TTL, leeway=LEEWAY)
        message = str(caught.value)
        assert str(path) in message
        assert "MCP_REVOCATION_URL" in message


def test_a_corrupt_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "revocations.db"
    junk = os.urandom(4096)
    db.write_bytes(junk)
    with pytest.raises(RevocationStoreError) as caught:
        SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    assert "not a database" in str(caught.value)
    assert "move a damaged file aside" in str(caught.value)
    assert db.read_bytes() == junk


def test_writes_purge_expired_rows(tmp_path: Path, opened: Open, clock: FakeClock) -> None:
    db = tmp_path / "r.db"
    now = int(clock.now)
    denylist = opened(settings_for(f"sqlite:///{db}"), clock=clock.time)
    for i in range(100):
        denylist.revoke_jti(f"j{i}", now + 10)
    denylist.revoke_sub("alice", now)

    def rows() -> list[tuple[str, str]]:
        with closing(sqlite3.connect(db)) as check:
            return check.execute("SELECT kind, key FROM revocations ORDER BY id").fetchall()

    assert len(rows()) == 101
    clock.now = now + 10 + LEEWAY + 1
    denylist.revoke_jti("later", now + 200)
    assert rows() == [("sub", "alice"), ("jti", "later")]
    clock.now = now + MAX_TTL + LEEWAY + 1  # past at + max_ttl + leeway for alice, and later
    denylist.revoke_jti("last", now + MAX_TTL + 60)
    assert rows() == [("jti", "last")]


# -- a file moved, deleted or rolled back under running readers ----------------


def move_aside(db: Path) -> Path:
    """`mv revocations.db* aside/`, as an operator would."""
    aside = db.parent / "aside"
    aside.mkdir()
    for file in db.parent.glob(db.name + "*"):
        file.rename(aside / file.name)
    return aside


def restore_in_place(backup: Path, db: Path) -> None:
    """Copy `backup` over the live `db` through SQLite (as `sqlite3 db ".restore backup"`)."""
    with closing(sqlite3.connect(backup)) as source, closing(sqlite3.connect(db)) as target:
        source.backup(target)


def stored(db: Path, now: int) -> Entries:
    """Every unexpired entry in the file, read by a fresh store."""
    store = SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    try:
        return store.load(now)
    finally:
        store.close()


def test_a_store_moved_aside_is_noticed_and_the_new_file_followed(
    tmp_path: Path, opened: Open
) -> None:
    db = tmp_path / "revocations.db"
    now = int(time.time())
    follower = opened(settings_for(f"sqlite:///{db}"))
    assert isinstance(follower, SyncedDenylist)
    follower.revoke_jti("before", now + 60)
    follower.sync()
    aside = move_aside(db)
    # `token revoke` after the move: a new file whose first row reuses id 1
    revoker = opened(settings_for(f"sqlite:///{db}"), follow=False)
    revoker.revoke_jti("after", now + 60)
    follower.sync()
    assert follower.is_revoked("after", "x", now)
    assert follower.is_revoked("before", "x", now)
    # what the follower knew was written back into the new file; the old one is untouched
    assert stored(db, now) == Entries(jtis={"before": now + 60, "after": now + 60})
    assert stored(aside / db.name, now) == Entries(jtis={"before": now + 60})


def test_a_deleted_store_is_recreated_private_and_written_back(
    tmp_path: Path, opened: Open
) -> None:
    db = tmp_path / "revocations.db"
    now = int(time.time())
    follower = opened(settings_for(f"sqlite:///{db}"))
    assert isinstance(follower, SyncedDenylist)
    follower.revoke_sub("alice", now)
    for file in tmp_path.glob("revocations.db*"):
        file.unlink()
    follower.sync()
    assert mode(db) == 0o600
    assert stored(db, now) == Entries(subs={"alice": now})


@pytest.mark.parametrize("writes_after", [1, 5])
def test_a_backup_restored_in_place_is_noticed(tmp_path: Path, writes_after: int) -> None:
    """New rows reuse ids at or below the reader's cursor; with 5 of them, the high-water
    mark is back above the cursor before the reader looks, and the cursor's row tells."""
    db, backup = tmp_path / "revocations.db", tmp_path / "backup.db"
    now = int(time.time())
    writer = SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    reader = SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    writer.put(Entries(jtis={"kept": now + 60}), now)
    restore_in_place(db, backup)  # the backup: one row
    writer.put(Entries(jtis={"lost-1": now + 60}), now)
    writer.put(Entries(jtis={"lost-2": now + 60}), now)
    assert len(reader.load(now)) == 3  # the reader's cursor is at id 3
    restore_in_place(backup, db)
    new = {f"new-{i}": now + 60 for i in range(writes_after)}
    for jti, exp in new.items():
        writer.put(Entries(jtis={jti: exp}), now)
    assert reader.changes() is None
    assert reader.load(now) == Entries(jtis={"kept": now + 60, **new})
    assert reader.changes() == Entries()
    writer.close()
    reader.close()


def test_a_purged_cursor_row_is_not_taken_for_a_rollback(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "revocations.db"
    now = int(clock.now)
    writer = SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    reader = SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY, clock=clock.time)
    writer.put(Entries(jtis={"short": now + 1}), now)
    reader.load(now)
    later = now + 1 + LEEWAY + 1
    writer.put(Entries(jtis={"next": now + 600}), later)  # purges "short", the cursor's row
    clock.now = later
    assert reader.changes() == Entries(jtis={"next": now + 600})
    writer.close()
    reader.close()


# -- symbolic links -------------------------------------------------------------


def test_a_symlink_at_the_database_path_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"not yours to touch\n")
    target.chmod(0o644)
    db = tmp_path / "revocations.db"
    db.symlink_to(target)
    with pytest.raises(ConfigError) as caught:
        SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    message = str(caught.value)
    assert "symbolic link" in message
    assert "MCP_REVOCATION_URL" in message
    assert "\n" not in message
    assert target.read_bytes() == b"not yours to touch\n"
    assert mode(target) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "revocations.db"]


def test_a_dangling_symlink_at_the_database_path_creates_nothing(tmp_path: Path) -> None:
    db, target = tmp_path / "revocations.db", tmp_path / "elsewhere.db"
    db.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    assert not target.exists()


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_symlinked_wal_or_shm_is_refused_and_its_target_untouched(
    tmp_path: Path, suffix: str
) -> None:
    db = tmp_path / "revocations.db"
    SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY).close()
    target = tmp_path / "precious"
    target.write_bytes(b"x" * 100)
    db.with_name(db.name + suffix).symlink_to(target)
    with pytest.raises(ConfigError) as caught:
        SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    assert f"revocations.db{suffix}" in str(caught.value)
    assert "symbolic link" in str(caught.value)
    assert target.read_bytes() == b"x" * 100


def test_a_link_swapped_in_while_sqlite_opens_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, other = tmp_path / "revocations.db", tmp_path / "other.db"
    SqliteStore(other, max_ttl=MAX_TTL, leeway=LEEWAY).close()
    before = other.read_bytes()
    connect = sqlite3.connect

    def swapping_connect(path: Path, **kwargs: Any) -> sqlite3.Connection:
        link = tmp_path / "link"
        link.symlink_to(other)
        link.replace(path)  # after the checks, before SQLite opens the path
        opened: sqlite3.Connection = connect(path, **kwargs)
        return opened

    monkeypatch.setattr("mcp_warden.tokens.revocation.sqlite.sqlite3.connect", swapping_connect)
    with pytest.raises(ConfigError, match="replaced while it was being opened"):
        SqliteStore(db, max_ttl=MAX_TTL, leeway=LEEWAY)
    assert other.read_bytes() == before


def test_a_database_replaced_by_a_link_under_a_running_reader_is_refused(
    tmp_path: Path, opened: Open
) -> None:
    db, target = tmp_path / "revocations.db", tmp_path / "precious"
    target.write_bytes(b"not yours to touch\n")
    follower = opened(settings_for(f"sqlite:///{db}"))
    assert isinstance(follower, SyncedDenylist)
    for file in tmp_path.glob("revocations.db*"):
        file.unlink()
    db.symlink_to(target)
    with pytest.raises(RevocationStoreError, match="symbolic link"):
        follower.sync()
    assert target.read_bytes() == b"not yours to touch\n"
