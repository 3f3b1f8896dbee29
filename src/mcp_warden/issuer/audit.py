"""The issuer's audit lines: one JSON line per token issued or refused, per revocation.

    {"time": "2026-01-02T03:04:05.678Z", "event": "token", "outcome": "issued",
     "client_id": "mcpw_...", "tools": ["web_search"], "jti": "...", "status": 200,
     "client": "10.0.0.7"}
    {"time": ..., "event": "token", "outcome": "refused", "client_id": "mcpw_...",
     "tools": null, "jti": null, "reason": "invalid_secret", "error": "invalid_client",
     "status": 401, "client": "10.0.0.7"}
    {"time": ..., "event": "revoke", "outcome": "revoked", "client_id": ..., "jti": ...}

Same style and same file rules as the server's audit log (server/audit.py):
`MCP_AUDIT_LOG` (opened for appending without following a link, created
0600, this user's regular file) or stderr; each line is one write(2) on an
O_APPEND descriptor; a failed write loses the line, never the request.
`reason` is a stable word (`invalid_secret`, `unknown_client`,
`assertion_replayed`, `invalid_scope`, ...). A line never holds a secret,
an assertion or a token: only the fields above, a claimed client_id cut to
64 printable characters.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from mcp_warden.credentials.files import open_private
from mcp_warden.errors import ConfigError

CLIENT_CHARS = 64
_STDERR = 2

log = logging.getLogger("mcp_warden.issuer.audit")


class IssuerAudit:
    """Appends issuer audit lines to one file descriptor."""

    def __init__(self, fd: int, *, owned: bool) -> None:
        self._fd = fd
        self._owned = owned
        self._failing = False

    @classmethod
    def open(cls, path: Path | None) -> IssuerAudit:
        """The log at `path` (created 0600, appended to), or stderr when `path` is None."""
        if path is None:
            return cls(_STDERR, owned=False)
        what = "the audit log (MCP_AUDIT_LOG)"
        try:
            fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what=what)
        except OSError as exc:
            raise ConfigError(
                f"cannot open {what} {path}: {exc.strerror or exc}; fix the path or its directory"
            ) from None
        return cls(fd, owned=True)

    def record(
        self,
        *,
        event: str,
        outcome: str,
        status: int,
        client_id: str | None,
        address: str | None,
        tools: Sequence[str] | None = None,
        jti: str | None = None,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """Write one line now (never raises)."""
        entry: dict[str, object] = {
            "time": _utc_now(),
            "event": event,
            "outcome": outcome,
            "client_id": _short(client_id),
            "tools": list(tools) if tools is not None else None,
            "jti": jti,
        }
        if reason is not None:
            entry["reason"] = reason
        if error is not None:
            entry["error"] = error
        entry["status"] = status
        entry["client"] = _short(address)
        data = (json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            if not self._failing:
                log.warning("audit line not written (%s); further failures are not reported", exc)
            self._failing = True

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in text[:CLIENT_CHARS])


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
