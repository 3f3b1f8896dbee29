"""SQLite revocation store: one file shared by every process on one host.

Scheme: one append-only table. A revocation is a new row
`(id, kind, key, value, expires_at)`; `id` is `INTEGER PRIMARY KEY
AUTOINCREMENT`, so ids only grow and are never reused, even after the row
with the largest id is purged (plain INTEGER PRIMARY KEY could reuse it and a
reader whose cursor sits there would miss the new row). SQLite has one writer
at a time, so a row becomes visible only after every smaller id: a reader's
`WHERE id > cursor` is a range scan of the rowid b-tree that costs what
changed since its last sync. A row holds `expires_at` (jti: exp + leeway;
sub: at + max_ttl + leeway) and every write deletes the expired rows through
an index in the same transaction, so the table holds only the revocations of
the last token lifetime. Duplicates (a jti revoked twice) are merged by the
readers (`max`).

The file is created 0600 (SQLite gives its -wal and -shm files the same
mode), in WAL mode so readers never block the writer, with a busy timeout so
concurrent writers wait instead of failing, and `synchronous=FULL`: a
revocation that returned is on disk.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

from mcp_warden.tokens.revocation_sync import Entries, RevocationStoreError

BUSY_TIMEOUT_SECONDS = 5.0
_BATCH = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('jti', 'sub')),
    key TEXT NOT NULL,
    value INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revocations_expires_at ON revocations (expires_at);
"""


class SqliteStore:
    """The `Store` on one SQLite file; one connection, used under a lock."""

    def __init__(self, path: Path, *, max_ttl: int, leeway: int) -> None:
        self.path = path
        self._max_ttl = max_ttl
        self._leeway = leeway
        self._cursor = 0
        self._lock = threading.Lock()
        _create_private(path)
        try:
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error("cannot open", exc) from exc
        try:
            _configure(self._db, path)
        except BaseException:
            self._db.close()
            raise

    @property
    def description(self) -> str:
        return f"SQLite database {self.path}"

    def load(self, now: int) -> Entries:
        entries = Entries()
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    row = self._db.execute("SELECT max(id) FROM revocations").fetchone()
                    for kind, into in (("jti", entries.jtis), ("sub", entries.subs)):
                        # NOT INDEXED: nearly every row matches, and a table scan reads
                        # them in order instead of one b-tree search per row (3x faster).
                        rows = self._db.execute(
                            "SELECT key, value FROM revocations NOT INDEXED "
                            "WHERE kind = ? AND expires_at >= ?",
                            (kind, now),
                        )
                        for key, value in rows:
                            if into.get(key, value) <= value:
                                into[key] = value
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from exc
            self._cursor = row[0] or 0
        return entries

    def changes(self, *, resume: bool = False) -> Entries | None:
        entries = Entries()
        with self._lock:
            try:
                if resume:
                    # AUTOINCREMENT's high-water mark only falls when the file was replaced.
                    row = self._db.execute(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'revocations'"
                    ).fetchone()
                    if (row[0] if row else 0) < self._cursor:
                        return None
                while True:
                    rows = self._db.execute(
                        "SELECT id, kind, key, value FROM revocations WHERE id > ? "
                        "ORDER BY id LIMIT ?",
                        (self._cursor, _BATCH),
                    ).fetchall()
                    for row_id, kind, key, value in rows:
                        entries.add(kind, key, value)
                        self._cursor = row_id
                    if len(rows) < _BATCH:
                        return entries
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from exc

    def put(self, entries: Entries, now: int) -> None:
        jti_life, sub_life = self._leeway, self._max_ttl + self._leeway
        rows = [("jti", k, v, v + jti_life) for k, v in entries.jtis.items()]
        rows += [("sub", k, v, v + sub_life) for k, v in entries.subs.items()]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO revocations (kind, key, value, expires_at) "
                        "VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    self._db.execute("DELETE FROM revocations WHERE expires_at < ?", (now,))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error("cannot write", exc) from exc

    restore = put

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _error(self, what: str, exc: BaseException) -> RevocationStoreError:
        return RevocationStoreError(
            f"{what} the revocation database {self.path}: {exc}; check MCP_REVOCATION_URL, "
            "the directory's permissions, or move a damaged file aside"
        )


def _configure(db: sqlite3.Connection, path: Path) -> None:
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise RevocationStoreError(
            f"cannot use the revocation database {path}: {exc}; check MCP_REVOCATION_URL, "
            "or move a damaged file aside"
        ) from exc
    if mode != "wal":
        raise RevocationStoreError(
            f"the revocation database {path} cannot use WAL mode (got {mode!r}); "
            "put it on a local file system"
        )


def _create_private(path: Path) -> None:
    """Create the file 0600 before SQLite opens it; tighten an existing file we own."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise RevocationStoreError(
            f"cannot open the revocation database {path}: {exc.strerror}; "
            "check MCP_REVOCATION_URL and that its directory exists and is writable"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RevocationStoreError(
                f"the revocation database {path} is not a regular file; fix MCP_REVOCATION_URL"
            )
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
