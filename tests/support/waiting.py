"""Awaiting a condition instead of sleeping a fixed time: one polling helper for the tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def eventually(check: Callable[[], bool], within: float, what: str, poll: float = 0.01) -> float:
    """Seconds until `check()` holds, polling every `poll` s; fails the test after `within` s."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(poll)
    return time.monotonic() - start
