"""`memory://`: a denylist in this process only (tests, a single stdio server)."""

from __future__ import annotations

import time

from mcp_warden.config import DEFAULTS
from mcp_warden.tokens.revocation.rules import Clock, Expiry
from mcp_warden.tokens.revocation.store import Entries
from mcp_warden.tokens.revocation.view import RevocationView


class MemoryDenylist:
    """The in-process view alone: no store to follow, so it is always fresh."""

    def __init__(
        self,
        *,
        max_ttl: int = DEFAULTS.token_max_ttl,
        leeway: int = DEFAULTS.token_leeway,
        clock: Clock = time.time,
    ) -> None:
        self._view = RevocationView(Expiry(max_ttl=max_ttl, leeway=leeway))
        self._clock = clock

    def revoke_jti(self, jti: str, exp: int) -> None:
        self._add(Entries.one("jti", jti, exp))

    def revoke_sub(self, sub: str, at: int) -> None:
        self._add(Entries.one("sub", sub, at))

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        return self._view.contains(jti, sub, iat)

    def fresh(self) -> bool:
        """Always: nothing is written anywhere else."""
        return True

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._view)

    def _add(self, entries: Entries) -> None:
        self._view.merge(entries)
        self._view.purge(int(self._clock()))
