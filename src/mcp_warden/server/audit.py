"""The audit trail: one JSON line per `tools/call`, whoever decided it.

    {"time": "2026-01-02T03:04:05.678Z", "sub": "alice", "jti": "...", "tool": "web_search",
     "outcome": "allowed", "latency_ms": 12.3}
    {"time": ..., "outcome": "denied", "reason": "tool_not_allowed", ...}
    {"time": ..., "outcome": "error", "reason": "rate_limited", ...}

`outcome` is `allowed` (the tool ran and succeeded), `denied` (refused before
it ran: the token does not name it, or the stdio token is no longer valid) or
`error` (it ran, or its arguments were refused, and failed); `reason` is a
stable word (`ScavioError.reason`, `invalid_arguments`, a token refusal
reason...). A line never holds a credential, a token, the caller's arguments
(query, URL) or an upstream message: only the fields above, with the tool
name cut to 128 characters.

Where: `MCP_AUDIT_LOG` (a file, created 0600, opened for appending) or, when
unset, stderr, where a server's logs go under systemd, containers and MCP
clients that spawn stdio servers. Each line is one `write(2)` on an
`O_APPEND` descriptor, so replicas appending to one file on one host do not
interleave lines. No fsync per line: an audit line costs a few microseconds,
and a host crash may lose the last lines the kernel had not yet written out.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Literal

Outcome = Literal["allowed", "denied", "error"]

TOOL_CHARS = 128
_STDERR = 2

log = logging.getLogger("mcp_warden.audit")


class AuditLog:
    """Appends audit lines to one file descriptor."""

    def __init__(self, fd: int, *, owned: bool) -> None:
        self._fd = fd
        self._owned = owned
        self._failing = False

    @classmethod
    def open(cls, path: Path | None) -> AuditLog:
        """The log at `path` (created 0600, appended to), or stderr when `path` is None."""
        if path is None:
            return cls(_STDERR, owned=False)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        return cls(os.open(path, flags, 0o600), owned=True)

    def record(
        self,
        *,
        sub: str | None,
        jti: str | None,
        tool: object,
        outcome: Outcome,
        latency_ms: float,
        reason: str | None = None,
    ) -> None:
        """Write one line now (never raises: an unwritable log must not fail the call)."""
        entry: dict[str, object] = {
            "time": _utc_now(),
            "sub": sub,
            "jti": jti,
            "tool": tool[:TOOL_CHARS] if isinstance(tool, str) else None,
            "outcome": outcome,
        }
        if reason is not None:
            entry["reason"] = reason
        entry["latency_ms"] = round(latency_ms, 3)
        data = (json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:  # a full disk loses the line, not the request
            if not self._failing:
                log.warning("audit line not written (%s); further failures are not reported", exc)
            self._failing = True

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
