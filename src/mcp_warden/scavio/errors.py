"""What a Scavio call fails with: one class, and a stable `reason` word per failure.

The message is fixed text per cause that says what failed and what to do; it
never holds the upstream's own words (an upstream may echo the key), the key,
the caller's query or URL, or a server path. Those go to the server log.
"""

from __future__ import annotations

from typing import Literal

from mcp_warden.errors import WardenError
from mcp_warden.scavio.retry import TransientReason

FailureReason = Literal[
    TransientReason,
    "invalid_argument",
    "no_credential",
    "invalid_request",
    "rejected",
    "out_of_credits",
    "bad_response",
]


class ScavioError(WardenError):
    """A Scavio operation that failed; `reason` is a stable word for audit lines."""

    def __init__(self, reason: FailureReason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.status = status


class InvalidArgument(ScavioError):
    """An argument outside its documented range; nothing was sent upstream."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_argument", message)
