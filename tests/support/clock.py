"""The tests' one fake clock: wall-clock and monotonic time that only the test moves.

Pass `clock.time` where code takes a wall clock (`clock=`), `clock.monotonic`
where it takes a monotonic one, `clock.utc` where it takes a datetime clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

NOW = 1_800_000_000
"""A fixed wall-clock time (2027-01-15), far from any real token's."""


@dataclass
class FakeClock:
    """Seconds since the epoch (`now`) and on a monotonic clock (`mono`); set them by hand."""

    now: float = NOW
    mono: float = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)
