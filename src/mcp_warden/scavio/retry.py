"""When to retry an upstream call, and how long to wait first.

Only transient failures are retried: HTTP 429, 500, 502, 503 and 504, timeouts
and connection errors. The wait honours what the upstream asks for
(`Retry-After` as seconds or an HTTP date, else `X-RateLimit-Reset` as seconds
or a Unix time); without a hint it is full-jitter exponential backoff
(0.5 s, 1 s, 2 s ... windows). No wait exceeds `MAX_WAIT`: when the upstream
asks for longer, the call fails at once with that figure in the message
rather than holding the client for minutes. The policy is tenacity's; the
sleep function is injectable so tests can record the waits instead of
sleeping them.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

MAX_WAIT = 8.0
"""Seconds: the longest single wait before a retry."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_EPOCH_THRESHOLD = 1_000_000_000.0  # X-RateLimit-Reset above this is a Unix time, not a delay

Sleep = Callable[[float], Awaitable[None]]
TransientReason = Literal["rate_limited", "unavailable", "timeout", "unreachable"]


@dataclass(eq=False)
class Transient(Exception):
    """A failure worth another attempt; `describe` words it once attempts run out.

    `message` is fixed text for the client; `upstream_text` is what the upstream
    said, already masked, for the server log only.
    """

    reason: TransientReason
    message: str
    status: int | None = None
    retry_after: float | None = None
    upstream_text: str | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        """False when the upstream asked for a wait longer than we are willing to hold."""
        return self.retry_after is None or self.retry_after <= MAX_WAIT

    def describe(self, attempts: int) -> str:
        if not self.retryable:
            return f"{self.message}; it asks to wait {self.retry_after:.0f} s, try again then"
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return f"{self.message} after {tries}; try again later"


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """The wait the upstream asks for, in seconds, or None when it gives no usable hint."""
    wall = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after:
        seconds = _number(retry_after)
        if seconds is None:
            seconds = _http_date(retry_after)
            seconds = None if seconds is None else seconds - wall
        if seconds is not None:
            return max(seconds, 0.0)
    reset = _number(headers.get("x-ratelimit-reset") or "")
    if reset is not None:
        return max(reset - wall if reset > _EPOCH_THRESHOLD else reset, 0.0)
    return None


def retrying(*, attempts: int, sleep: Sleep, backoff: float = 0.5) -> AsyncRetrying:
    """A fresh tenacity policy for one call (its statistics are per call)."""
    jitter = wait_random_exponential(multiplier=backoff, max=MAX_WAIT)

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, Transient) and failure.retry_after is not None:
            return failure.retry_after
        return float(jitter(state))

    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception(lambda exc: isinstance(exc, Transient) and exc.retryable),
        sleep=sleep,
        reraise=True,
    )


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _http_date(text: str) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": HTTP dates are always GMT
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
