"""The rotation log: append-only JSON lines, hash-chained and keyed, never a value.

Each line is one event, written with a single ``write`` and fsynced::

    {"time":"2026-05-01T12:00:00.000000Z","credential":"scavio_api_key",
     "action":"rotated","actor":"ops@host","prev":"<sha256 hex of the line before>",
     "mac":"<HMAC-SHA256 hex>"}

``prev`` is the SHA-256 of the previous line's bytes (without its newline);
the first line's is 64 zeros. ``mac`` is the HMAC-SHA256 of the line's bytes
up to ``prev`` included (the same line without ``,"mac":"..."``), under a key
derived from MCP_ENCRYPTION_KEY (`keyed`). Each line's MAC covers its
``prev`` and so the whole chain before it: a bare hash chain can be edited
and recomputed by anyone, a keyed one only by a holder of the master key.
`verify` checks the chain, then every MAC, so an edited, reordered, inserted
or deleted line is found at the first line after it, and a forged line with a
recomputed chain at the forged line. What a chain cannot show is lines cut
from the end: `verify` returns the head hash, for the operator to record
elsewhere and compare later.

Lines without ``mac`` are legacy lines, written before the log was keyed.
They are accepted only before the first keyed line: the first keyed line,
appended by the first change after the upgrade, chains to the legacy head,
so its MAC vouches for the legacy lines as they were then (migration, with
nothing rewritten). A legacy line after a keyed one is an error. A log with
no keyed line at all verifies with a warning (`LogSummary.legacy`): it may
be an old log not yet extended, or a keyed log stripped of its MACs.

`cred rekey` re-keys the log: `rewrite` re-signs every keyed line under the
new key in one atomic replace (legacy lines stay byte for byte).

A line without its final newline was never committed (a crash during the
append): the next append cuts it off, and `verify` and `events` ignore it.
Appends from different processes are serialized by the log's own file lock.
The file is opened without following links (`files.open_private`).
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
from mcp_warden.credentials.keyed import LOG_INFO, derive, mac, same
from mcp_warden.errors import ConfigError

ACTIONS = (
    "created",
    "rotated",
    "rekeyed",
    "deleted",
    "imported",
    "rolled_back",
    "rotate_failed",
    "bound",
)
GENESIS = "0" * 64
WHAT = "the rotation log"
_LEGACY_FIELDS = ("time", "credential", "action", "actor", "prev")
_FIELDS = (*_LEGACY_FIELDS, "mac")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAC_TAIL = re.compile(rb',"mac":"([0-9a-f]{64})"\}\Z')
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TAIL_CHUNK = 4096
_FIX = "keep this copy as evidence, restore the log from a backup and review the store's changes"


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
    """What `verify` found: how many lines, the hash of the last one, how many are legacy."""

    lines: int
    head: str
    legacy: int = 0


class RotationLog:
    """The append-only, hash-chained, keyed audit log of credential changes."""

    def __init__(
        self,
        path: Path,
        actor: str,
        *,
        key: bytes | None = None,
        next_key: bytes | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`key`: the master key (appends and verification); `next_key`: also verifies."""
        self.path = Path(path)
        self.actor = actor
        self._key = derive(key, LOG_INFO) if key is not None else None
        self._next = derive(next_key, LOG_INFO) if next_key is not None else None
        self._clock = clock or (lambda: datetime.now(UTC))

    def under(self, key: bytes) -> RotationLog:
        """The same log, signed and verified under another master key (for a re-key)."""
        return RotationLog(self.path, self.actor, key=key, clock=self._clock)

    def append(self, credential: str, action: str) -> None:
        """Append one keyed event and fsync it before returning."""
        if action not in ACTIONS:
            raise ValueError(f"unknown rotation log action {action!r}")
        key = self._writing_key()
        when = self._clock().astimezone(UTC)
        with files.locked(self.path):
            created = not os.path.lexists(self.path)
            fd = files.open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, what=WHAT)
            try:
                last = _last_line(fd, self.path, cut=True)
                self._check_head(last, key)
                record = {
                    "time": when.strftime(_TIME_FORMAT),
                    "credential": credential,
                    "action": action,
                    "actor": self.actor,
                    "prev": _sha256(last) if last is not None else GENESIS,
                }
                line = _signed(_body(record), key) + b"\n"
                if os.write(fd, line) != len(line):  # one write: a crash cannot interleave lines
                    raise OSError(f"short write to {self.path} (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                files.fsync_dir(self.path.parent)

    def check_head(self) -> None:
        """LogCorrupt unless this key can extend the log (its last line authenticates).

        Writers call it before they change the store, so a log they cannot
        extend stops the change instead of leaving it unlogged.
        """
        key = self._writing_key()
        try:
            fd = files.open_private(self.path, os.O_RDONLY, what=WHAT)
        except FileNotFoundError:
            return
        try:
            self._check_head(_last_line(fd, self.path, cut=False), key)
        finally:
            os.close(fd)

    def events(self) -> list[LogEvent]:
        """Every event in order; LogCorrupt names the first line that does not parse."""
        return [_parse(self.path, n, line)[0] for n, line in enumerate(self._lines(), 1)]

    def verify(self) -> LogSummary:
        """Check every line, the hash chain and every MAC; LogCorrupt names the first bad line."""
        keys = [k for k in (self._key, self._next) if k is not None]
        if not keys:
            raise ConfigError(
                "verifying the rotation log needs MCP_ENCRYPTION_KEY: its lines are "
                "authenticated with a key derived from it; export it and retry"
            )
        lines = self._lines()
        expected = GENESIS
        parsed: list[tuple[LogEvent, dict[str, str]]] = []
        for number, line in enumerate(lines, 1):  # the chain first, as an unkeyed log was
            event, record = _parse(self.path, number, line)
            if record["prev"] != expected:
                link = f"chain to line {number - 1}" if number > 1 else "start the chain"
                raise LogCorrupt(
                    f"{self.path} line {number} ({event.action} {event.credential!r}) does not "
                    f"{link}: a line at or before it was edited, reordered, inserted or deleted; "
                    f"{_FIX}"
                )
            parsed.append((event, record))
            expected = _sha256(line)
        legacy = self._check_macs(lines, parsed, keys)
        return LogSummary(len(lines), expected, legacy)

    def rewrite(self, new_key: bytes) -> None:
        """Re-sign every keyed line under `new_key`, in one atomic replace (a re-key).

        The log must verify under this log's key first: re-signing must never
        launder a forged line.
        """
        target = derive(new_key, LOG_INFO)
        with files.locked(self.path):
            self.verify()
            lines = self._lines()
            out: list[bytes] = []
            for line in lines:
                record = json.loads(line)
                if "mac" not in record:
                    out.append(line)  # a legacy line stays byte for byte
                    continue
                del record["mac"]
                record["prev"] = _sha256(out[-1]) if out else GENESIS
                out.append(_signed(_body(record), target))
            if out == lines:
                return  # empty, or legacy lines only: nothing is signed yet
            files.refuse_link(self.path, WHAT)
            files.write_atomic(self.path, b"".join(line + b"\n" for line in out))

    def _check_macs(
        self, lines: list[bytes], parsed: list[tuple[LogEvent, dict[str, str]]], keys: list[bytes]
    ) -> int:
        """Check every keyed line under one key; the number of legacy lines before them."""
        key: bytes | None = None
        first_keyed = 0
        for number, (line, (event, record)) in enumerate(zip(lines, parsed, strict=True), 1):
            where = f"{self.path} line {number} ({event.action} {event.credential!r})"
            if "mac" not in record:
                if first_keyed:
                    raise LogCorrupt(
                        f"{where} has no 'mac' although line {first_keyed} before it has one: "
                        f"the log was rewritten without the key from there on; {_FIX}"
                    )
                continue
            if not first_keyed:
                first_keyed = number
                key = next((k for k in keys if _authentic(line, k)), None)
            if key is None or not _authentic(line, key):
                names = "MCP_ENCRYPTION_KEY" if len(keys) == 1 else "either master key"
                raise LogCorrupt(
                    f"{where} does not authenticate under {names}: it was edited or forged "
                    "(recomputing the hash chain does not help without the key), or the log "
                    f"was written under another master key; {_FIX}"
                )
        return first_keyed - 1 if first_keyed else len(lines)

    def _writing_key(self) -> bytes:
        if self._key is None:
            raise ConfigError(
                "writing the rotation log needs MCP_ENCRYPTION_KEY (its lines are "
                "authenticated with a key derived from it); export it and retry"
            )
        return self._key

    def _check_head(self, last: bytes | None, key: bytes) -> None:
        if last is None:
            return
        try:
            record = json.loads(last)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise LogCorrupt(
                f"the last line of {self.path} is not a rotation log line; nothing was "
                "changed: run `mcp-warden cred log --verify` and restore the log from a backup"
            )
        if "mac" in record and not _authentic(last, key):
            raise LogCorrupt(
                f"the last line of {self.path} does not authenticate under MCP_ENCRYPTION_KEY "
                "(the log was edited, or written under another master key); nothing was "
                "changed: run `mcp-warden cred log --verify`, then restore the log from a "
                "backup or move it aside"
            )

    def _lines(self) -> list[bytes]:
        try:
            fd = files.open_private(self.path, os.O_RDONLY, what=WHAT)
        except FileNotFoundError:
            return []
        with open(fd, "rb") as file:
            data = file.read()
        return data.split(b"\n")[:-1]  # the part after the last newline was never committed


def _sha256(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _body(record: dict[str, str]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode()


def _signed(body: bytes, key: bytes) -> bytes:
    """`body` (a JSON object) with its MAC as the last field."""
    return body[:-1] + b',"mac":"' + mac(key, body).encode() + b'"}'


def _authentic(line: bytes, key: bytes) -> bool:
    found = _MAC_TAIL.search(line)
    if found is None:
        return False
    body = line[: found.start()] + b"}"
    return same(mac(key, body), found.group(1).decode())


def _last_line(fd: int, path: Path, *, cut: bool) -> bytes | None:
    """The last committed line; with `cut`, an uncommitted tail (a crash mid-append) is cut off."""
    size = os.fstat(fd).st_size
    end = _rfind_newline(fd, size) + 1
    if end < size and cut:
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


def _parse(path: Path, number: int, line: bytes) -> tuple[LogEvent, dict[str, str]]:
    where = f"{path} line {number}"
    fix = "keep this copy as evidence and restore the log from a backup"
    try:
        record = json.loads(line)
    except ValueError:
        raise LogCorrupt(f"{where} is not valid JSON; {fix}") from None
    if not isinstance(record, dict) or tuple(record) not in (_LEGACY_FIELDS, _FIELDS):
        raise LogCorrupt(
            f"{where} does not have exactly the fields {', '.join(_LEGACY_FIELDS)} "
            f"(and 'mac' last); {fix}"
        )
    if not all(isinstance(value, str) for value in record.values()):
        raise LogCorrupt(f"{where} has a field that is not a string; {fix}")
    if record["action"] not in ACTIONS:
        raise LogCorrupt(f"{where} has the unknown action {record['action'][:40]!r}; {fix}")
    if _SHA256_HEX.fullmatch(record["prev"]) is None:
        raise LogCorrupt(f"{where} has a 'prev' that is not a SHA-256 hex digest; {fix}")
    if "mac" in record and _MAC_TAIL.search(line) is None:
        raise LogCorrupt(f"{where} has a 'mac' that is not in the form mcp-warden writes; {fix}")
    try:
        when = datetime.strptime(record["time"], _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise LogCorrupt(f"{where} has a time that is not {_TIME_FORMAT}; {fix}") from None
    event = LogEvent(number, when, record["credential"], record["action"], record["actor"])
    return event, record
