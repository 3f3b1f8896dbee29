"""Test doubles for the tools tests (the upstream itself is always the real stub)."""

from __future__ import annotations


class Sleeps:
    """A recording stand-in for asyncio.sleep: retries run instantly, waits are kept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
