"""The retry policy on its own: what counts as a wait hint, the 8 s cap, the wording."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from mcp_warden.scavio.retry import MAX_WAIT, Transient, retry_after_seconds, retrying
from tests.tools.fakes import Sleeps

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": " 1.5 "}, 1.5),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": email.utils.formatdate(NOW + 7, usegmt=True)}, 7.0),
        ({"Retry-After": email.utils.formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}, 0.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Reset": str(int(NOW) + 5)}, 5.0),
        ({"Retry-After": "2", "X-RateLimit-Reset": "9"}, 2.0),
        ({"Retry-After": "soon", "X-RateLimit-Reset": "9"}, 9.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"X-RateLimit-Reset": "tomorrow"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers), now=NOW) == seconds


async def test_backoff_without_hints_is_jittered_and_capped() -> None:
    sleeps = Sleeps()
    calls = 0

    async def always_busy() -> None:
        nonlocal calls
        calls += 1
        raise Transient("unavailable", "busy", 503)

    with pytest.raises(Transient):
        await retrying(attempts=6, sleep=sleeps, backoff=100.0)(always_busy)
    assert calls == 6
    assert len(sleeps.waits) == 5
    assert all(0.0 <= wait <= MAX_WAIT for wait in sleeps.waits)
    assert len(set(sleeps.waits)) > 1  # jittered, not a fixed schedule


async def test_only_transient_failures_are_retried() -> None:
    sleeps = Sleeps()
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("not transient")

    with pytest.raises(RuntimeError):
        await retrying(attempts=3, sleep=sleeps)(broken)
    assert calls == 1
    assert sleeps.waits == []


def test_messages_say_how_many_attempts_and_what_to_do() -> None:
    busy = Transient("rate_limited", "Scavio's rate limit was reached (HTTP 429)", 429)
    assert busy.describe(1) == (
        "Scavio's rate limit was reached (HTTP 429) after 1 attempt; try again later"
    )
    assert busy.describe(3).endswith("after 3 attempts; try again later")
    patient = Transient("rate_limited", "limited", 429, retry_after=120.0)
    assert not patient.retryable
    assert patient.describe(1) == "limited; it asks to wait 120 s, try again then"
