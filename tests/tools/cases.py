"""Upstream failure modes and what each becomes, shared by the client and the MCP tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROTATE = "run `mcp-warden cred rotate scavio_api_key`"

# mode sent to the stub, expected reason, expected message, calls the stub sees
FAILURES: list[tuple[dict[str, Any], str, str, int]] = [
    (
        {"status": 400, "error": "unsupported operator in query"},
        "invalid_request",
        "Scavio refused the request as invalid (HTTP 400); check the arguments",
        1,
    ),
    ({"status": 401}, "rejected", f"the stored Scavio key was rejected (HTTP 401); {ROTATE}", 1),
    ({"status": 403}, "rejected", f"the stored Scavio key was rejected (HTTP 403); {ROTATE}", 1),
    ({"status": 402}, "out_of_credits", "the Scavio account is out of credits (HTTP 402)", 1),
    ({"status": 404}, "bad_response", "Scavio has no endpoint /api/v2/google (HTTP 404)", 1),
    (
        {"status": 429, "retry_after": 0},
        "rate_limited",
        "Scavio's rate limit was reached (HTTP 429) after 3 attempts; try again later",
        3,
    ),
    *[
        (
            {"status": code},
            "unavailable",
            f"Scavio is unavailable (HTTP {code}) after 3 attempts; try again later",
            3,
        )
        for code in (500, 502, 503, 504)
    ],
    ({"bad_json": True}, "bad_response", "Scavio sent a response that is not valid JSON", 1),
    (
        {"bad_shape": True},
        "bad_response",
        "Scavio's response has an unexpected shape: `organic_results` is not a list",
        1,
    ),
]


def missing_key_logged(store: Path) -> str:
    """The one server-log line of a call when `store` has no `scavio_api_key`: the fix, once."""
    return (
        "the Scavio API key 'scavio_api_key' could not be loaded: no credential "
        f"'scavio_api_key' in {store}; list them with `mcp-warden cred list` or create it "
        "with `mcp-warden cred set scavio_api_key`"
    )
