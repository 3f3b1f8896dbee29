"""When a revocation stops mattering, and what "every token of this subject" covers.

One expiry rule, used by the in-process view and by every store (memory,
SQLite, Redis), so that all of them drop an entry at the same second:

- a jti entry holds the token's `exp` and lives until `exp + leeway`;
- a sub entry holds `at` (tokens with `iat <= at` are refused) and lives until
  `at + max_ttl + leeway`: a token it refuses has `exp <= iat + max_ttl <= at + max_ttl`.

An entry is gone once `now` is past that second (`expired`); before, a token it
names could still pass a verifier whose clock runs `leeway` behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Seconds from `time.time` (wall clock) or `time.monotonic`, or a test's fake."""


def expired(expires_at: int, now: int) -> bool:
    """True once an entry that lives until `expires_at` can refuse no token any more."""
    return expires_at < now


@dataclass(frozen=True)
class Lifetime:
    """How long an entry of one kind outlives its value, in seconds."""

    seconds: int

    def expires_at(self, value: int) -> int:
        return value + self.seconds

    def live(self, value: int, now: int) -> bool:
        return not expired(self.expires_at(value), now)

    def oldest_live(self, now: int) -> int:
        """The smallest value still live at `now` (for stores that select by value)."""
        return now - self.seconds


class Expiry:
    """The rule for both kinds, from MCP_TOKEN_MAX_TTL and MCP_TOKEN_LEEWAY."""

    def __init__(self, *, max_ttl: int, leeway: int) -> None:
        self.jti = Lifetime(leeway)
        self.sub = Lifetime(max_ttl + leeway)
        # How long after it is written an entry can still be live: the `exp` of a
        # token accepted now, or a sub's `at` (sub_cutoff), lies up to `leeway`
        # (plus max_ttl for the exp) ahead of the writer's clock.
        self.after_write = max_ttl + 2 * leeway


def sub_cutoff(now: float, leeway: int) -> int:
    """The `at` of "revoke every token of this subject issued so far", revoked at `now`.

    Verifiers accept an `iat` up to `leeway` seconds ahead of their clock, so a
    token minted just before the revocation by a host whose clock runs ahead
    may carry an `iat` up to `now + leeway`: the cutoff covers it. The price:
    tokens of the subject minted within `leeway` seconds after the revocation
    are refused too. The entry lives until `at + max_ttl + leeway`, past the
    `exp` (at most `iat + max_ttl`) of every token it refuses.
    """
    return int(now) + leeway
