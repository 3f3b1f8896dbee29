"""One SQLite database file that the processes of one host share, opened safely.

The revocation store, the DPoP replay cache and the issuer's client registry
each keep such a file. Opening one is the same recipe everywhere:

- the file is created 0600 (or a loose one tightened) through
  `credentials.files.open_private`, so a link, a non-regular file or another
  user's file is refused before anything is created, chmodded or written;
- our descriptor is closed before SQLite opens the file: closing one later
  would drop every POSIX lock this process holds on the file, SQLite's too;
- a planted link at `-wal` or `-shm` (which SQLite opens by name) is refused;
- after connecting, the file SQLite opened must be the one checked;
- WAL mode (readers never block the writer), a busy timeout (writers wait),
  `synchronous` FULL unless the owner says otherwise.

`Followed` keeps the connection to the file now at the path, reopening when
the file was moved, deleted or replaced (a restored backup), so a long-running
server never keeps reading a file nobody writes any more.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcp_warden.credentials.files import open_private
from mcp_warden.errors import ConfigError, WardenError

BUSY_TIMEOUT_SECONDS = 5.0

Identity = tuple[int, int]
"""(st_dev, st_ino): which file a path names."""


def url_path(url: str, setting: str, *, also: str = "") -> Path:
    """The file named by `sqlite:///relative` or `sqlite:////absolute` in `setting`.

    `also` names the setting's other forms in the error ("memory:// for one process").
    """
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:" or any(c in path for c in "?#"):
        raise ConfigError(
            f"{setting} is not an SQLite URL we accept; use sqlite:///relative/path "
            f"or sqlite:////absolute/path{f' ({also})' if also else ''}"
        )
    return Path(path)


@dataclass(frozen=True)
class SqliteFile:
    """A shared SQLite file, its schema, and how errors name it.

    `name` is what it is ("the revocation database"), `setting` the variable
    that names it; `error` makes the owner's error type (a store failure) from
    a message.
    """

    path: Path
    name: str
    setting: str
    error: Callable[[str], WardenError]
    schema: str
    synchronous: str = "FULL"

    @property
    def what(self) -> str:
        return f"{self.name} of {self.setting}"

    def failure(self, verb: str, exc: BaseException, path: Path | None = None) -> WardenError:
        """`verb` ("cannot read") failed on the file: the owner's error, naming the fix."""
        return self.error(
            f"{verb} {self.name} {path or self.path}: {exc}; check {self.setting}, "
            "the directory's permissions, or move a damaged file aside"
        )

    def identity_now(self) -> Identity | None:
        """Which file is at the path now (None: none), without following a link."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.failure("cannot stat", exc) from exc
        return info.st_dev, info.st_ino

    def open(self) -> tuple[sqlite3.Connection, Identity]:
        """A configured connection to the regular file at the path (created 0600), its identity."""
        identity = self._create_private()
        self._refuse_linked_sidecars()
        try:
            db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self.failure("cannot open", exc) from exc
        try:
            self._check_same_file(db, identity)  # before anything is written through it
            self._configure(db)
            self._refuse_linked_sidecars()
        except BaseException:
            db.close()
            raise
        return db, identity

    def _configure(self, db: sqlite3.Connection) -> None:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.executescript(self.schema)
        except sqlite3.Error as exc:
            raise self.failure("cannot use", exc) from exc
        if mode != "wal":
            raise self.error(
                f"{self.name} {self.path} cannot use WAL mode (got {mode!r}); "
                "put it on a local file system"
            )

    def _create_private(self) -> Identity:
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT, what=self.what)
        except OSError as exc:
            raise self.error(
                f"cannot open {self.name} {self.path}: {exc.strerror}; "
                f"check {self.setting} and that its directory exists and is writable"
            ) from exc
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        return info.st_dev, info.st_ino

    def _refuse_linked_sidecars(self) -> None:
        """SQLite opens `-wal` and `-shm` by name, following links: refuse a planted one."""
        for suffix in ("-wal", "-shm"):
            sidecar = self.path.with_name(self.path.name + suffix)
            try:
                mode = os.stat(sidecar, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self.failure("cannot check", exc, sidecar) from exc
            if not stat.S_ISREG(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise ConfigError(
                    f"{sidecar}, beside {self.what}, is {kind}, which SQLite would write "
                    "through; remove it (SQLite recreates it as a file)"
                )

    def _check_same_file(self, db: sqlite3.Connection, identity: Identity) -> None:
        """Refuse when the file SQLite opened is not the one checked (a link swapped in)."""
        try:
            opened = db.execute("PRAGMA database_list").fetchone()[2]
            seen = [os.stat(opened), os.stat(self.path, follow_symlinks=False)]
        except (sqlite3.Error, OSError) as exc:
            raise self.failure("cannot check", exc) from exc
        if any((info.st_dev, info.st_ino) != identity for info in seen):
            raise ConfigError(
                f"{self.what} {self.path} was replaced while it was being opened; "
                "check that nothing else writes its directory, then retry"
            )


class Followed:
    """The connection to the file now at a `SqliteFile`'s path (callers hold their own lock)."""

    def __init__(self, file: SqliteFile) -> None:
        """Open the file (ConfigError for a link or a foreign file: a setting to fix)."""
        self.file = file
        self._db: sqlite3.Connection | None
        self._identity: Identity | None
        self._db, self._identity = file.open()

    def current(self) -> tuple[sqlite3.Connection, bool]:
        """The connection, and whether it was (re)opened just now.

        Kept while the path still names its file; else closed, and the file
        now there opened (created when missing). A refusal then (a link
        planted meanwhile) is the owner's error, so a store's sync treats it
        like any failure to read, and the next call tries again.
        """
        if self._db is not None and self.file.identity_now() == self._identity:
            return self._db, False
        self.close()
        try:
            self._db, self._identity = self.file.open()
        except ConfigError as exc:
            raise self.file.error(str(exc)) from exc
        return self._db, True

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
