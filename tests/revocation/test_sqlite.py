"""The SQLite store: a private WAL file, clear errors, incremental reads, purging."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from mcp_warden.tokens.revocation import Denylist, RevocationStoreError
from mcp_warden.tokens.revocation_sqlite import SqliteStore
from tests.revocation.conftest import LEEWAY, MAX_TTL, FakeClock, settings_for

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
    denylist = opened(settings_for(f"sqlite:///{db}"), clock=clock)
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
