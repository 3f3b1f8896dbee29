"""The revocation denylist: the only state a stateless verifier consults.

A token is revoked when its `jti` is listed (until the token's own `exp`), or
when its `sub` was revoked at or after the token's `iat` ("every token of this
subject issued so far"). Backends are chosen by URL: `memory://`,
`sqlite:///path`, `redis://host:port/db`.

`is_revoked` sits on every request's path, so backends answer it from memory
and keep that view fresh in the background.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError

Clock = Callable[[], float]


class Denylist(Protocol):
    """What the verifier and the CLI need from any backend."""

    def revoke_jti(self, jti: str, exp: int) -> None:
        """Refuse the token with this jti until `exp` (its own expiry)."""

    def revoke_sub(self, sub: str, at: int) -> None:
        """Refuse every token of `sub` whose `iat` is at or before `at`."""

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        """True when the token is revoked.

        Raises TokenError("revocation_unavailable") when the backend cannot
        vouch for its answer (a shared store unreachable for too long).
        """

    def close(self) -> None:
        """Release connections and background work."""


class MemoryDenylist:
    """One process only: for tests and single-process stdio servers."""

    def __init__(self, *, max_ttl: int = 86_400, clock: Clock = time.time) -> None:
        self._jtis: dict[str, int] = {}
        self._subs: dict[str, int] = {}
        self._max_ttl = max_ttl
        self._clock = clock
        self._lock = threading.Lock()

    def revoke_jti(self, jti: str, exp: int) -> None:
        with self._lock:
            self._jtis[jti] = max(exp, self._jtis.get(jti, 0))

    def revoke_sub(self, sub: str, at: int) -> None:
        with self._lock:
            self._subs[sub] = max(at, self._subs.get(sub, 0))

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        if jti in self._jtis:
            return True
        revoked_at = self._subs.get(sub)
        return revoked_at is not None and iat <= revoked_at

    def close(self) -> None:
        """Nothing to release."""


def open_denylist(settings: Settings) -> Denylist:
    """The backend named by `settings.revocation_url`."""
    url = settings.revocation_url
    if url == "memory://":
        return MemoryDenylist(max_ttl=settings.token_max_ttl)
    raise ConfigError(
        f"MCP_REVOCATION_URL scheme not supported yet: {url.split(':', 1)[0]!r}; "
        "use memory://, sqlite:///path or redis://host:port/db"
    )
