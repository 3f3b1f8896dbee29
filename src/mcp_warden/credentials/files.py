"""Crash-safe files: strict JSON reads, atomic 0600 writes, the writers' lock.

An atomic write puts the new content in a temporary file in the same
directory (created 0600), fsyncs it, renames it over the target and fsyncs
the directory, so a reader sees the old file or the new one, never a part,
and a crash at any moment leaves one of the two on disk.

Each new file is stamped with an mtime at least one nanosecond after the
file it replaces. Readers detect a change by (device, inode, size, mtime_ns,
ctime_ns); on filesystems whose clock ticks coarsely, two same-size writes in
one tick into a recycled inode would otherwise look unchanged.

Warnings (an existing secret file readable by group or others, a temporary
file left by a killed writer) go to the `mcp_warden.credentials` logger at
WARNING. Without logging configured, Python prints them as one line on stderr.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from mcp_warden.credentials.errors import CorruptStore, StoreBusy
from mcp_warden.errors import ConfigError

logger = logging.getLogger("mcp_warden.credentials")

Signature = tuple[int, int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): changes whenever a file is replaced."""

LOCK_TIMEOUT = 30.0
_warned: set[tuple[int, int, int]] = set()
# filelock polls a non-blocking flock; a short interval keeps queued writers from idling.


def signature(st: os.stat_result) -> Signature:
    """What `load` compares to decide that a file has not changed."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_snapshot(path: Path) -> tuple[Signature, bytes] | None:
    """The bytes of `path` and the signature of exactly those bytes; None when missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as file:
        st = os.fstat(file.fileno())
        warn_if_exposed(path, st)
        return signature(st), file.read()


def parse_object(path: Path, data: bytes) -> dict[str, object]:
    """A JSON object of unique names, or CorruptStore naming the file and what to do."""
    fix = f"restore {path} from a backup (mcp-warden never overwrites a file it cannot parse)"
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_unique_names(path, fix),
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError:
        raise CorruptStore(f"{path} is not UTF-8 text; {fix}") from None
    except ValueError as exc:  # JSONDecodeError, or NaN/Infinity
        detail = ""
        if isinstance(exc, json.JSONDecodeError):
            detail = f" ({exc.msg} at line {exc.lineno})"
        raise CorruptStore(f"{path} is not valid JSON{detail}; {fix}") from None
    if not isinstance(value, dict):
        raise CorruptStore(f"{path} holds JSON {type(value).__name__}, not an object; {fix}")
    return value


def read_object(path: Path) -> dict[str, object] | None:
    """Strictly parsed JSON object at `path`; None when the file does not exist."""
    snapshot = read_snapshot(path)
    return None if snapshot is None else parse_object(path, snapshot[1])


def dump_object(entries: dict[str, object]) -> bytes:
    """The bytes mcp-warden writes: indented JSON (like the tutorial), names in their order."""
    return (json.dumps(entries, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; the new file has `mode` (0600).

    The new mtime is always later than the old one, so readers that watch the
    mtime (the store's load cache, the JWKS file source) never miss a change.
    """
    previous_mtime = _mtime_ns(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "wb") as file:
            if mode != 0o600:  # mkstemp creates 0600
                os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            stamp = max(time.time_ns(), previous_mtime + 1)
            os.utime(file.fileno(), ns=(stamp, stamp))
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove(path: Path) -> None:
    """Delete `path` durably (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> None:
    """Delete temporary files a killed writer of `path` left behind (call under the lock).

    They hold ciphertext, possibly under a master key that was since replaced.
    """
    for tmp in path.parent.glob(f".{_glob_escape(path.name)}.????????.tmp"):
        logger.warning("removing %s, left by an interrupted write", tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def open_private(path: Path, flags: int, *, what: str, mode: int = 0o600) -> int:
    """Open `path` (a secret or an audit file) without following a link; a descriptor.

    `flags` are os.open flags (O_CREAT creates the file with `mode`). What is
    opened must be a regular file owned by this user: a symbolic link, a FIFO,
    a device or another user's file is refused with a ConfigError that names
    `what` ("the rotation log") and the fix, so a planted link cannot redirect
    an append, a truncation or a chmod. A file readable by group or others is
    kept but warned about (`warn_if_exposed`).
    """
    fd = _open_nofollow(path, flags, what, mode)
    try:
        st = os.fstat(fd)
        _check_own_regular_file(path, st, what)
        os.set_blocking(fd, True)
        warn_if_exposed(path, st)
    except BaseException:
        os.close(fd)
        raise
    return fd


SECRET_FILE_MAX_BYTES = 64 * 1024


def read_secret(path: Path, *, what: str, systemd: bool = False) -> str:
    """The text of a secret file (a master key, a password), without its trailing newline.

    Opened without following a link; it must be a regular, non-empty UTF-8 file
    of at most 64 KiB, owned by this user and private to it (mode 0600 or
    0400): anything readable by group or others is refused, never just warned
    about, with a ConfigError naming `what` and `chmod 600`.

    `systemd=True` is for a credential systemd placed in $CREDENTIALS_DIRECTORY
    (`LoadCredential=`). systemd writes those files itself, 0400, into a
    read-only directory only the service's user can enter; where it cannot
    chown them it leaves them owned by root with an ACL for that user, which
    shows as mode 0440 (the ACL mask in the group bits). So a credential may
    also be owned by root and have the group read bit; anything else (a write
    or execute bit for group, any bit for others) is still refused.
    """
    try:
        fd = _open_nofollow(path, os.O_RDONLY, what, 0)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; fix the path") from None
    except PermissionError:
        raise ConfigError(
            f"{what} {path} cannot be read by this user; make that user its owner "
            f"(`chown`) and run `chmod 600 {path}`"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file; fix the path")
        if st.st_uid != os.geteuid() and not (systemd and st.st_uid == 0):
            raise ConfigError(
                f"{what} {path} belongs to another user (uid {st.st_uid}); make the user "
                f"mcp-warden runs as its owner (`chown`) and run `chmod 600 {path}`"
            )
        allowed = stat.S_IRGRP if systemd else 0
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~allowed:
            raise ConfigError(
                f"{what} {path} is accessible to group or others (mode "
                f"{stat.S_IMODE(st.st_mode):03o}); mcp-warden refuses to read a secret "
                f"from it: run `chmod 600 {path}`"
            )
        os.set_blocking(fd, True)
        data = b""
        while len(data) <= SECRET_FILE_MAX_BYTES:
            chunk = os.read(fd, SECRET_FILE_MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise ConfigError(f"{what} {path} is over 64 KiB, not a secret file; fix the path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; fix the file") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"{what} {path} is empty; write the secret into it")
    return text


def _open_nofollow(path: Path, flags: int, what: str, mode: int) -> int:
    """os.open without following a final link, non-blocking (a FIFO must not hang us)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"{what} {path} is a symbolic link; mcp-warden does not follow links to its "
                "files: point the setting at the real file or remove the link"
            ) from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise ConfigError(f"{what} {path} is not a regular file; fix the path") from None
        raise


def refuse_link(path: Path, what: str) -> None:
    """ConfigError when `path` is a symbolic link (call under the lock, before replacing it).

    Atomic writes rename a new file over `path`: through a link they would
    replace the link, not the file it points to, and readers of the real file
    would never see the change.
    """
    if path.is_symlink():
        raise ConfigError(
            f"{what} {path} is a symbolic link; mcp-warden does not follow links to its "
            "files: point the setting at the real file or remove the link"
        )


def _check_own_regular_file(path: Path, st: os.stat_result, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file; fix the path")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} belongs to another user (uid {st.st_uid}); run mcp-warden as "
            "that file's owner, or move the file aside"
        )


def warn_if_exposed(path: Path, st: os.stat_result) -> None:
    """Log a warning (once per file per process) when group or others can access it."""
    seen = (st.st_dev, st.st_ino, st.st_ctime_ns)  # a chmod or a new file warns again
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and seen not in _warned:
        _warned.add(seen)
        logger.warning(
            "%s is accessible to group or others (mode %03o); run `chmod 600 %s`",
            path,
            stat.S_IMODE(st.st_mode),
            path,
        )


@contextlib.contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the cross-process writers' lock of `path` (the file `path`.lock, flock)."""
    if not path.parent.is_dir():
        raise ConfigError(f"directory {path.parent} does not exist; create it or fix the path")
    lock_path = path.with_name(path.name + ".lock")
    lock = FileLock(
        lock_path, timeout=timeout, mode=0o600, fallback_to_soft=False, poll_interval=0.005
    )
    try:
        lock.acquire()
    except Timeout:
        raise StoreBusy(
            f"another process has held {lock_path} for over {timeout:g} s; "
            "wait for it to finish and retry"
        ) from None
    except OSError as exc:  # filelock opens the lock file with O_NOFOLLOW
        if exc.errno != errno.ELOOP:
            raise
        raise ConfigError(
            f"the lock file {lock_path} is a symbolic link; mcp-warden does not follow links "
            "to its files: remove the link"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _unique_names(path: Path, fix: str) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for name, value in pairs:
            if name in result:
                raise CorruptStore(f"{path} has the name {name!r} twice; {fix}")
            result[name] = value
        return result

    return hook


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
