"""The rotation log: append-only JSON lines, hash-chained, never a value.

Each line is one event, written with a single ``write`` and fsynced::

    {"time":"2026-05-01T12:00:00.000000Z","credential":"scavio_api_key",
     "action":"rotated","actor":"ops@host","prev":"<sha256 hex of the line before>"}

``prev`` is the SHA-256 of the previous line's bytes (without its newline);
the first line's is 64 zeros. `verify` recomputes the chain, so an edited,
reordered, inserted or deleted line is found at the first line after it.
What a bare hash chain cannot show is a change to the *last* line or lines cut
from the end: `verify` prints the head hash so an operator can record it
elsewhere and compare later.

A line without its final newline was never committed (a crash during the
append): the next append cuts it off, and `verify` and `events` ignore it.
Appends from different processes are serialized by the log's own file lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mcp_warden.credentials import files
from mcp_warden.credentials.errors import LogCorrupt

ACTIONS = (
    "created",
    "rotated",
    "rekeyed",
    "deleted",
    "imported",
    "rolled_back",
    "rotate_failed",
)
GENESIS = "0" * 64
_FIELDS = ("time", "credential", "action", "actor", "prev")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TAIL_CHUNK = 4096


@dataclass(frozen=True)
class LogEvent:
    """One parsed line of the rotation log."""

    line: int
    time: datetime
    credential: str
    action: str
    actor: str


@dataclass(frozen=True)
class LogSummary:
    """What `verify` found: how many lines and the hash of the last one."""

    lines: int
    head: str


class RotationLog:
    """The append-only, hash-chained audit log of credential changes."""

    def __init__(
        self,
        path: Path,
        actor: str,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        self.actor = actor
        self._clock = clock or (lambda: datetime.now(UTC))

    def append(self, credential: str, action: str) -> None:
        """Append one event and fsync it before returning."""
        if action not in ACTIONS:
            raise ValueError(f"unknown rotation log action {action!r}")
        when = self._clock().astimezone(UTC)
        with files.locked(self.path):
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                last = _last_line(fd, self.path)
                record = {
                    "time": when.strftime(_TIME_FORMAT),
                    "credential": credential,
                    "action": action,
                    "actor": self.actor,
                    "prev": _sha256(last) if last is not None else GENESIS,
                }
                line = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
                if os.write(fd, line) != len(line):  # one write: a crash cannot interleave lines
                    raise OSError(f"short write to {self.path} (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                files.fsync_dir(self.path.parent)

    def events(self) -> list[LogEvent]:
        """Every event in order; LogCorrupt names the first line that does not parse."""
        return [_parse(self.path, number, line) for number, line in enumerate(self._lines(), 1)]

    def verify(self) -> LogSummary:
        """Check every line and the hash chain; LogCorrupt names the first bad line."""
        expected = GENESIS
        lines = self._lines()
        for number, line in enumerate(lines, 1):
            event = _parse(self.path, number, line)
            prev = json.loads(line)["prev"]
            if prev != expected:
                link = f"chain to line {number - 1}" if number > 1 else "start the chain"
                raise LogCorrupt(
                    f"{self.path} line {number} ({event.action} {event.credential!r}) does not "
                    f"{link}: a line at or before it was edited, reordered, inserted or deleted; "
                    "keep this copy as evidence, restore the log from a backup and review the "
                    "store's changes"
                )
            expected = _sha256(line)
        return LogSummary(len(lines), expected)

    def _lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        return lines[:-1]  # the part after the last newline was never committed


def _sha256(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _last_line(fd: int, path: Path) -> bytes | None:
    """The last committed line, after cutting off an uncommitted tail (a crash mid-append)."""
    size = os.fstat(fd).st_size
    end = _rfind_newline(fd, size) + 1
    if end < size:
        files.logger.warning("%s ended in an incomplete line (a crash); cutting it off", path)
        os.ftruncate(fd, end)
        os.fsync(fd)
    if end == 0:
        return None
    start = _rfind_newline(fd, end - 1) + 1
    return os.pread(fd, end - 1 - start, start)


def _rfind_newline(fd: int, before: int) -> int:
    """The offset of the last newline before `before`, or -1."""
    while before > 0:
        start = max(0, before - _TAIL_CHUNK)
        found = os.pread(fd, before - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        before = start
    return -1


def _parse(path: Path, number: int, line: bytes) -> LogEvent:
    where = f"{path} line {number}"
    fix = "keep this copy as evidence and restore the log from a backup"
    try:
        record = json.loads(line)
    except ValueError:
        raise LogCorrupt(f"{where} is not valid JSON; {fix}") from None
    if not isinstance(record, dict) or tuple(record) != _FIELDS:
        raise LogCorrupt(f"{where} does not have exactly the fields {', '.join(_FIELDS)}; {fix}")
    if not all(isinstance(record[name], str) for name in _FIELDS):
        raise LogCorrupt(f"{where} has a field that is not a string; {fix}")
    if record["action"] not in ACTIONS:
        raise LogCorrupt(f"{where} has the unknown action {record['action'][:40]!r}; {fix}")
    if _SHA256_HEX.fullmatch(record["prev"]) is None:
        raise LogCorrupt(f"{where} has a 'prev' that is not a SHA-256 hex digest; {fix}")
    try:
        when = datetime.strptime(record["time"], _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise LogCorrupt(f"{where} has a time that is not {_TIME_FORMAT}; {fix}") from None
    return LogEvent(number, when, record["credential"], record["action"], record["actor"])
