"""Signing-key rotation end to end, with one verifier that is never restarted.

The issuer side runs as real `mcp-warden` processes (keys new, token mint,
keys retire); the verifier is built once from settings, as a server replica
does, and watches the real jwks.json.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.demo.harness import cli_env, run_cli
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier

pytestmark = pytest.mark.slow

REFRESH = 0.2


def cli(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def eventually_refused(verifier: Verifier, token: str, within: float = 3.0) -> str:
    """The reason the verifier gives once it refuses `token` (bounded wait for the JWKS stat)."""
    deadline = time.monotonic() + within
    while True:
        try:
            verifier.verify(token)
        except TokenError as exc:
            return exc.reason
        if time.monotonic() > deadline:
            pytest.fail(f"token still accepted {within} s after its key was retired")
        time.sleep(REFRESH / 4)


def test_rotation_without_restarting_the_verifier(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    env = cli_env(MCP_KEYS_DIR=str(keys))
    mint = ["token", "mint", "--tools", "web_search", "--ttl", "3600", "--sub", "app"]
    old_kid = cli(["keys", "new"], env)
    old_token = cli(mint, env)

    settings = Settings(keys_dir=keys, jwks=str(keys / "jwks.json"), jwks_refresh_seconds=REFRESH)
    denylist = MemoryDenylist()
    verifier = Verifier.from_settings(settings, denylist)
    try:
        assert verifier.verify(old_token).kid == old_kid

        new_kid = cli(["keys", "new"], env)
        new_token = cli(mint, env)
        time.sleep(REFRESH)  # the unknown-kid reload is rate-limited to once per interval
        assert verifier.verify(new_token).kid == new_kid
        assert verifier.verify(old_token).kid == old_kid  # old key still published

        refused = run_cli(["keys", "retire", old_kid], env)
        assert refused.returncode == 1
        assert "--force" in refused.stderr
        assert verifier.verify(old_token).kid == old_kid

        cli(["keys", "retire", old_kid, "--force"], env)
        assert eventually_refused(verifier, old_token) == "unknown_key"
        assert verifier.verify(new_token).kid == new_kid
        assert verifier.verify(cli(mint, env)).kid == new_kid
    finally:
        verifier.close()
