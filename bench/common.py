"""What a benchmark module returns, and the timing helpers they share."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


class Unavailable(Exception):
    """A benchmark cannot run on this machine (the message says what to install)."""


@dataclass(frozen=True)
class Figure:
    """One measured figure, with the baseline it is compared against (same run)."""

    section: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    goal: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value


def per_call_us(fn: Callable[[], object], *, number: int, repeat: int = 5) -> float:
    """Median over `repeat` runs of the microseconds one call of `fn` takes."""
    fn()  # warm up caches and imports
    runs = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            runs.append((time.perf_counter() - start) / number * 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(runs)
