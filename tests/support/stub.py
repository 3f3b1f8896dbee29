"""Test-side helpers for the stub upstream (run it with `mcp_warden.demo.harness.stub_process`)."""

from __future__ import annotations

import secrets


def new_api_key() -> str:
    """A fresh random upstream API key for a test (never a real one)."""
    return "sk_test_" + secrets.token_urlsafe(24)


def key_runs(text: str, key: str, run: int = 8) -> list[str]:
    """Every run of `run` characters of `key` that `text` holds, in any case (none: [])."""
    folded, wanted = text.casefold(), key.casefold()
    pieces = {wanted[i : i + run] for i in range(len(wanted) - run + 1)}
    return sorted(piece for piece in pieces if piece in folded)
