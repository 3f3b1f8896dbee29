"""Settings come from the environment in one place, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError


def test_defaults_follow_design() -> None:
    s = Settings.from_env({})
    assert s.credentials_file == Path("mcp_credentials.enc")
    assert s.rotation_log == Path("rotation_log.jsonl")
    assert s.jwks == "keys/jwks.json"
    assert s.token_audience == "http://127.0.0.1:8000/mcp"
    assert s.revocation_url == "sqlite:///./revocations.db"
    assert s.scavio_base_url == "https://api.scavio.dev"
    assert s.encryption_key is None


def test_jwks_timings() -> None:
    assert (
        Settings.from_env({}).jwks_refresh_seconds,
        Settings.from_env({}).jwks_max_age_seconds,
    ) == (1.0, 60.0)
    s = Settings.from_env({"MCP_JWKS_REFRESH_SECONDS": "0.5", "MCP_JWKS_MAX_AGE_SECONDS": "10"})
    assert (s.jwks_refresh_seconds, s.jwks_max_age_seconds) == (0.5, 10.0)


def test_jwks_defaults_to_keys_dir() -> None:
    assert Settings.from_env({"MCP_KEYS_DIR": "/srv/k"}).jwks == "/srv/k/jwks.json"


def test_secrets_not_in_repr() -> None:
    s = Settings.from_env({"MCP_ENCRYPTION_KEY": "ab" * 32, "MCP_TOKEN": "tok.en.value"})
    assert "ab" * 32 not in repr(s)
    assert "tok.en.value" not in repr(s)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MCP_TOKEN_MAX_TTL", "ten"),
        ("MCP_TOKEN_MAX_TTL", "0"),
        ("SCAVIO_PROFILE", "v3"),
        ("MCP_REVOCATION_STALE_SECONDS", "-1"),
        ("MCP_JWKS_MAX_AGE_SECONDS", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_missing_master_key_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="mcp-warden keygen"):
        Settings.from_env({}).require_encryption_key()
