"""The client registry in one SQLite file, shared by the issuer processes of one host.

Two tables: `clients` (client_id, its unique name, the record as JSON; a
secret only as its SHA-256) and `assertions` (the SHA-256 of client_id and
jti of every private_key_jwt assertion used, until it expires; the primary
key makes a second use fail in whichever process tries it).

The file gets the care of the revocation database (tokens/revocation/sqlite.py):
created 0600 without following a link (`credentials.files.open_private`:
a link, a non-regular or another user's file is refused), its -wal and -shm
must not be links, SQLite must have opened the very file checked, WAL mode
with `synchronous=FULL` (a change that returned is on disk) and a busy
timeout. Every operation compares the file at the path with the open one
(one lstat) and reopens it when it was moved, replaced or restored from a
backup, so no process keeps serving a registry an operator replaced.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mcp_warden.errors import WardenError
from mcp_warden.issuer.clients import Client, ClientsError
from mcp_warden.issuer.registry import RegistryUnavailable, UnknownClient
from mcp_warden.sqlitefile import Followed, SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assertions (
    key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS assertions_expires_at ON assertions (expires_at);
"""


def assertion_key(client_id: str, jti: str) -> str:
    """A fixed-size key for (client_id, jti): no separator ambiguity, no unbounded row."""
    material = f"{len(client_id)}:{client_id}:{jti}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


class SqliteRegistry:
    """The `Registry` on one SQLite file; one connection, used under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        self._lock = threading.Lock()
        self._file = SqliteFile(
            self.path,
            name="the client registry",
            setting="MCP_CLIENTS_URL",
            error=RegistryUnavailable,
            schema=_SCHEMA,
        )
        self._connection = Followed(self._file)

    @property
    def description(self) -> str:
        return f"SQLite database {self.path}"

    def get(self, client_id: str) -> Client | None:
        with self._reading() as db:
            row = db.execute("SELECT doc FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        return None if row is None else self._parse(row[0])

    def all(self) -> list[Client]:
        with self._reading() as db:
            rows = db.execute("SELECT doc FROM clients ORDER BY name").fetchall()
        return [self._parse(row[0]) for row in rows]

    def add(self, client: Client) -> None:
        with self._writing() as db:
            try:
                db.execute(
                    "INSERT INTO clients (client_id, name, doc) VALUES (?, ?, ?)",
                    (client.client_id, client.name, client.to_json()),
                )
            except sqlite3.IntegrityError:
                raise ClientsError(
                    f"a client named {client.name!r} exists; choose another name or "
                    "`mcp-warden clients remove` it first"
                ) from None

    def update(self, client_id: str, change: Callable[[Client], Client]) -> Client:
        with self._writing() as db:
            row = db.execute("SELECT doc FROM clients WHERE client_id = ?", (client_id,)).fetchone()
            if row is None:
                raise UnknownClient(client_id)
            new = change(self._parse(row[0]))
            db.execute("UPDATE clients SET doc = ? WHERE client_id = ?", (new.to_json(), client_id))
        return new

    def remove(self, client_id: str) -> Client:
        with self._writing() as db:
            row = db.execute("SELECT doc FROM clients WHERE client_id = ?", (client_id,)).fetchone()
            if row is None:
                raise UnknownClient(client_id)
            db.execute("DELETE FROM clients WHERE client_id = ?", (client_id,))
        return self._parse(row[0])

    def use_assertion(self, client_id: str, jti: str, exp: int, now: int) -> bool:
        with self._writing() as db:
            db.execute("DELETE FROM assertions WHERE expires_at < ?", (now,))
            cursor = db.execute(
                "INSERT OR IGNORE INTO assertions (key, expires_at) VALUES (?, ?)",
                (assertion_key(client_id, jti), exp),
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # -- connection ------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._current()
            except sqlite3.Error as exc:
                raise self._unavailable("cannot read", exc) from exc

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                db = self._current()
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._unavailable("cannot write", exc) from exc

    def _current(self) -> sqlite3.Connection:
        """The connection to the file at the path (reopened when another file took its place)."""
        db, _ = self._connection.current()
        return db

    def _parse(self, doc: str) -> Client:
        try:
            return Client.from_json(doc)
        except ValueError as exc:
            raise RegistryUnavailable(
                f"{self.description} holds a damaged record ({exc}); restore it from a backup"
            ) from None

    def _unavailable(self, what: str, exc: BaseException) -> WardenError:
        return self._file.failure(what, exc)
