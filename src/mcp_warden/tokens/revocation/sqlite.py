"""SQLite revocation store: one file shared by every process on one host.

Scheme: one append-only table. A revocation is a new row
`(id, kind, key, value, expires_at)`; `id` is `INTEGER PRIMARY KEY
AUTOINCREMENT`, so ids only grow and are never reused, even after the row
with the largest id is purged (plain INTEGER PRIMARY KEY could reuse it and a
reader whose cursor sits there would miss the new row). SQLite has one writer
at a time, so a row becomes visible only after every smaller id: a reader's
`WHERE id > cursor` is a range scan of the rowid b-tree that costs what
changed since its last sync. A row holds `expires_at` (by rules.Expiry; a
row is expired once `now` is past it) and every write deletes the expired rows through
an index in the same transaction, so the table holds only the revocations of
the last token lifetime. Duplicates (a jti revoked twice) are merged by the
readers (`max`).

Ids only grow in one file, so a reader must notice when the file at the path
is no longer the one it read. Every read and write first compares the
device and inode at the path with those of the open file (one `lstat`): a
file moved aside, deleted or renamed over makes the store reopen the path
(creating it if missing) and report a reset, so the reader reloads in full.
A file rolled back in place (a backup restored through SQLite) keeps its
inode; there the reader checks that AUTOINCREMENT's high-water mark is not
below its cursor and that the last row it read is still there unchanged
(unless it expired), and reloads otherwise.

The file is created 0600 (SQLite gives its -wal and -shm files the same
mode), in WAL mode so readers never block the writer, with a busy timeout so
concurrent writers wait instead of failing, and `synchronous=FULL`: a
revocation that returned is on disk. Neither the file nor its -wal and -shm
may be a symbolic link (a planted link would redirect SQLite's writes and
our chmod), and after connecting the store checks that SQLite opened the
very file it checked.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from mcp_warden.errors import WardenError
from mcp_warden.sqlitefile import Followed, SqliteFile
from mcp_warden.tokens.revocation.rules import Clock, Expiry, expired
from mcp_warden.tokens.revocation.store import Entries, RevocationStoreError

_BATCH = 10_000

log = logging.getLogger("mcp_warden.revocation")

Row = tuple[int, str, str, int, int]
"""(id, kind, key, value, expires_at): a row as read."""

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
    """The `Store` on one SQLite file; one connection, used under a lock.

    Raises ConfigError at construction when the path is a link or not our
    regular file (a setting to fix); RevocationStoreError for everything else.
    """

    def __init__(self, path: Path, *, max_ttl: int, leeway: int, clock: Clock = time.time) -> None:
        self.path = path.absolute()  # a later chdir must not change the file
        self._expiry = Expiry(max_ttl=max_ttl, leeway=leeway)
        self._clock = clock
        self._last: Row | None = None  # the last row read; its id is the cursor
        self._reset = False  # the path was reopened: the next changes() reports a reset
        self._lock = threading.Lock()
        self._file = SqliteFile(
            self.path,
            name="the revocation database",
            setting="MCP_REVOCATION_URL",
            error=RevocationStoreError,
            schema=_SCHEMA,
        )
        self._connection = Followed(self._file)

    @property
    def description(self) -> str:
        return f"SQLite database {self.path}"

    def load(self, now: int) -> Entries:
        entries = Entries()
        with self._lock:
            try:
                db = self._current()
                db.execute("BEGIN")
                try:
                    last = db.execute(
                        "SELECT id, kind, key, value, expires_at FROM revocations "
                        "ORDER BY id DESC LIMIT 1"
                    ).fetchone()
                    for kind, into in (("jti", entries.jtis), ("sub", entries.subs)):
                        # NOT INDEXED: nearly every row matches, and a table scan reads
                        # them in order instead of one b-tree search per row (3x faster).
                        # `expires_at >= now`: not expired (rules.expired).
                        rows = db.execute(
                            "SELECT key, value FROM revocations NOT INDEXED "
                            "WHERE kind = ? AND expires_at >= ?",
                            (kind, now),
                        )
                        for key, value in rows:
                            if into.get(key, value) <= value:
                                into[key] = value
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from exc
            self._last = last
            self._reset = False
        return entries

    def changes(self, *, resume: bool = False) -> Entries | None:
        """What was written after the cursor, or None when the file was replaced or rolled back.

        Every call checks, so `resume` (the previous read failed) needs nothing more.
        """
        del resume
        entries = Entries()
        with self._lock:
            try:
                db = self._current()
                if self._reset:
                    return None
                row = db.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'revocations'"
                ).fetchone()
                if (row[0] if row else 0) < self._cursor:
                    return None  # AUTOINCREMENT's high-water mark went back: rolled back
                while True:
                    # From the cursor's own row on: it must still be the row read.
                    rows = db.execute(
                        "SELECT id, kind, key, value, expires_at FROM revocations "
                        "WHERE id >= ? ORDER BY id LIMIT ?",
                        (self._cursor, _BATCH),
                    ).fetchall()
                    if self._rolled_back(rows):
                        return None
                    for row in rows:
                        if row[0] > self._cursor:
                            entries.add(row[1], row[2], row[3])
                            self._last = row
                    if len(rows) < _BATCH:
                        return entries
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from exc

    def put(self, entries: Entries, now: int) -> None:
        jti, sub = self._expiry.jti, self._expiry.sub
        rows = [("jti", k, v, jti.expires_at(v)) for k, v in entries.jtis.items()]
        rows += [("sub", k, v, sub.expires_at(v)) for k, v in entries.subs.items()]
        with self._lock:
            try:
                db = self._current()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(
                        "INSERT INTO revocations (kind, key, value, expires_at) "
                        "VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    # `expires_at < now`: expired (rules.expired)
                    db.execute("DELETE FROM revocations WHERE expires_at < ?", (now,))
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error("cannot write", exc) from exc

    restore = put

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @property
    def _cursor(self) -> int:
        return 0 if self._last is None else self._last[0]

    def _current(self) -> sqlite3.Connection:
        """The connection to the file now at the path: reopened when another file took its place."""
        db, reopened = self._connection.current()
        if reopened:
            log.warning(
                "%s was moved, deleted or replaced; reopened the file now at that path",
                self.description,
            )
            self._reset = True
        return db

    def _rolled_back(self, rows: list[Row]) -> bool:
        """True when `rows` (from the cursor on) do not begin with the last row read.

        New rows may already have brought the high-water mark back above the
        cursor after a rollback; the row at the cursor tells, unless it expired
        and a write purged it since.
        """
        if self._last is None:
            return False
        if rows and rows[0][0] == self._last[0]:
            return tuple(rows[0]) != self._last
        return not expired(self._last[4], int(self._clock()))

    def _error(self, what: str, exc: BaseException) -> WardenError:
        return self._file.failure(what, exc)
