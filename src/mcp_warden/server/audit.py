"""The audit trail: one JSON line per `tools/call`, and one per request the HTTP layers refuse.

    {"time": "2026-01-02T03:04:05.678Z", "sub": "alice", "jti": "...", "tool": "web_search",
     "outcome": "allowed", "latency_ms": 12.3, "client": "10.0.0.7"}
    {"time": ..., "outcome": "denied", "reason": "tool_not_allowed", ...}
    {"time": ..., "outcome": "error", "reason": "rate_limited", ...}
    {"time": ..., "sub": null, "jti": null, "tool": null, "outcome": "refused",
     "reason": "bad_signature", "status": 401, "client": "10.0.0.7"}

`outcome` is `allowed` (the tool ran and succeeded), `denied` (refused before
it ran: the token does not name it, or the stdio token is no longer valid),
`error` (it ran, or its arguments were refused, and failed) or `refused` (an
HTTP request answered by our layers before the SDK: `status` 401 with the
failed token check, 503 `revocation_unavailable` or `overloaded`, 400
`batch`, 405 `method_not_allowed`, 413 `body_too_large`). `reason` is a
stable word (`ScavioError.reason`, `invalid_arguments`, a token refusal
reason...). `client` is the peer address over HTTP (what uvicorn reports:
the proxy's, unless it is a trusted one forwarding the client's); `sub` and
`jti` are set once the token verified. A line never holds a credential, a
token, the caller's arguments (query, URL) or an upstream message: only the
fields above, with the tool name cut to 128 characters.

The issuer service (`mcp-warden issuer serve`) writes its lines here too,
told apart by `event` (`token`: issued or refused; `revoke`), with the
client_id, the granted tools and jti, `reason`, the RFC 6749 `error`, the
HTTP `status` and the peer; never a secret, an assertion or a token:

    {"time": ..., "event": "token", "outcome": "issued", "client_id": "mcpw_...",
     "tools": ["web_search"], "jti": "...", "status": 200, "client": "10.0.0.7"}
    {"time": ..., "event": "token", "outcome": "refused", "client_id": "mcpw_...",
     "tools": null, "jti": null, "reason": "invalid_secret", "error": "invalid_client", ...}

Every line also counts in the Prometheus metrics (`metrics/catalog.py`: tool
calls, refusals, issuer requests), from the same fields, with bounded labels.

On the MCP server, every line is written through `RequestAudit`, made once per request where
the request enters (an HTTP layer, or `ToolGuard` for a call that reaches
the SDK): it knows the client, when the request started and, once the token
verified, its grant, so no layer gathers those itself.

Where: `MCP_AUDIT_LOG` (a file, created 0600, opened for appending without
following a link, and only when it is this user's regular file: see
`credentials.files.open_private`) or, when unset, stderr, where a server's
logs go under systemd, containers and MCP clients that spawn stdio servers.
Each line is one `write(2)` on an `O_APPEND` descriptor, so replicas
appending to one file on one host do not interleave lines. No fsync per
line, so a line costs one system call and no disk flush per call; a host
crash may lose the last lines the kernel had not yet written out.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mcp_warden.credentials.files import open_private
from mcp_warden.errors import ConfigError
from mcp_warden.metrics import catalog as metrics

if TYPE_CHECKING:
    from mcp_warden.server.grants import Grant

Outcome = Literal["allowed", "denied", "error", "refused"]

TOOL_CHARS = 128
CLIENT_CHARS = 64
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
        sub: str | None,
        jti: str | None,
        tool: object,
        outcome: Outcome,
        latency_ms: float,
        reason: str | None = None,
        client: str | None = None,
    ) -> None:
        """Write one tool-call line now (never raises: an unwritable log must not fail the call)."""
        entry = _entry(sub, jti, tool, outcome, reason)
        entry["latency_ms"] = round(latency_ms, 3)
        if client is not None:
            entry["client"] = client[:CLIENT_CHARS]
        self._write(entry)
        metrics.tool_call(tool, outcome, latency_ms / 1000)

    def refused(
        self,
        *,
        status: int,
        reason: str,
        client: str | None,
        sub: str | None = None,
        jti: str | None = None,
    ) -> None:
        """Write the line of an HTTP request refused before the SDK (never raises)."""
        entry = _entry(sub, jti, None, "refused", reason)
        entry["status"] = status
        entry["client"] = client[:CLIENT_CHARS] if client is not None else None
        self._write(entry)
        metrics.refusal(status, reason)

    def issuer_event(
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
        authenticated: bool = False,
    ) -> None:
        """Write the line of an issuer request (a token issued or refused, a revocation).

        `authenticated`: `client_id` is the client that authenticated, not only the
        one the request claimed; only then does the metric name it.
        """
        entry: dict[str, object] = {
            "time": _utc_now(),
            "event": event,
            "outcome": outcome,
            "client_id": _printable(client_id),
            "tools": list(tools) if tools is not None else None,
            "jti": jti,
        }
        if reason is not None:
            entry["reason"] = reason
        if error is not None:
            entry["error"] = error
        entry["status"] = status
        entry["client"] = _printable(address)
        self._write(entry)
        metrics.issuer_request(event, outcome, client_id if authenticated else None, reason)

    def _write(self, entry: dict[str, object]) -> None:
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

    def request(self, scope: Mapping[str, Any] | None, grant: Grant | None = None) -> RequestAudit:
        """The audit of one request from its ASGI `scope` (None: no HTTP, as on stdio)."""
        return RequestAudit(self, client_address(scope) if scope is not None else None, grant)


@dataclass(slots=True)
class RequestAudit:
    """One request's audit: who (once known), from where, since when; writes its lines."""

    log: AuditLog
    client: str | None
    grant: Grant | None = None
    started: float = field(default_factory=time.perf_counter)

    def call(
        self, tool: object, outcome: Outcome, reason: str | None = None, *, status: int = 0
    ) -> None:
        """The line of a tools/call: allowed, denied or error, with its latency so far.

        `status`: the HTTP status an HTTP layer refused the call with before the SDK
        (403 insufficient_scope); it counts among the refusals' metrics too.
        """
        sub, jti = self._who()
        self.log.record(
            sub=sub,
            jti=jti,
            tool=tool,
            outcome=outcome,
            reason=reason,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            client=self.client,
        )
        if status:
            metrics.refusal(status, reason)

    def refused(self, status: int, reason: str) -> None:
        """The line of an HTTP request our layers answered `status` before the SDK."""
        sub, jti = self._who()
        self.log.refused(status=status, reason=reason, client=self.client, sub=sub, jti=jti)

    def _who(self) -> tuple[str | None, str | None]:
        return (self.grant.sub, self.grant.jti) if self.grant else (None, None)


def client_address(scope: Mapping[str, Any]) -> str | None:
    """The peer's host from an ASGI scope, as the audit log names it (None when unknown)."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and client and isinstance(client[0], str):
        return client[0]
    return None


def _entry(
    sub: str | None, jti: str | None, tool: object, outcome: Outcome, reason: str | None
) -> dict[str, object]:
    entry: dict[str, object] = {
        "time": _utc_now(),
        "sub": sub,
        "jti": jti,
        "tool": tool[:TOOL_CHARS] if isinstance(tool, str) else None,
        "outcome": outcome,
    }
    if reason is not None:
        entry["reason"] = reason
    return entry


def _printable(text: str | None) -> str | None:
    """A caller-supplied name cut to CLIENT_CHARS, control characters shown as '?'."""
    if text is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in text[:CLIENT_CHARS])


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
