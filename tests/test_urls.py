"""`mcp_warden.urls`: what the product prints of a URL that may hold a password or a token."""

from __future__ import annotations

import pytest

from mcp_warden.config import Settings
from mcp_warden.urls import UNPARSABLE, redacted, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:Pa55@jwks.example:8443/jwks.json?token=T0k#Frag",
            "https://jwks.example:8443/jwks.json",
        ),
        ("https://u:p@ss@host.example/a", "https://host.example/a"),
        ("https://[::1]:9/x?y=1", "https://[::1]:9/x"),
        ("redis://:Pa55@redis.example:6379/0", "redis://redis.example:6379/0"),
        ("sqlite:////var/lib/x.db?mode=ro", "sqlite:////var/lib/x.db"),
        ("https://h.example/@me/x?q=1", "https://h.example/@me/x"),
        ("https://user:pa/55@host.example/x", UNPARSABLE),  # a "/" in a password: no port
        ("https://user:pa?55@host.example", UNPARSABLE),
        ("keys/jwks.json", "keys/jwks.json"),  # a path, not a URL
    ],
)
def test_redacted_keeps_scheme_host_port_and_path_only(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_scrub_hides_every_secret_part_wherever_the_text_quotes_it() -> None:
    url = "https://jwksUser:Pa55%21word@jwks.example/jwks.json?token=T0kenValue#Frag9"
    text = f"GET {url} failed; user jwksUser:Pa55!word, query token=T0kenValue, #Frag9"
    scrubbed = scrub(text, url)
    assert scrubbed.startswith("GET https://jwks.example/jwks.json failed; ")
    for secret in ("Pa55", "T0kenValue", "Frag9"):
        assert secret not in scrubbed


def test_settings_repr_shows_no_url_that_may_hold_a_secret() -> None:
    settings = Settings.from_env(
        {
            "MCP_JWKS": "https://u:JwksPw@jwks.example/jwks.json?token=JwksTok",
            "MCP_REVOCATION_URL": "redis://:RedisPw@redis.example:6379/0",
            "SCAVIO_BASE_URL": "https://scavio.example/?k=ScavTok",
        }
    )
    for secret in ("JwksPw", "JwksTok", "RedisPw", "ScavTok"):
        assert secret not in repr(settings)


def test_a_bad_audience_url_is_refused_without_its_password_or_query() -> None:
    from mcp_warden.errors import ConfigError
    from mcp_warden.server.auth import auth_settings

    settings = Settings.from_env({"MCP_TOKEN_AUDIENCE": "ftp://u:Pa55w0rd@h.example/mcp?t=S3cr3t"})
    with pytest.raises(ConfigError) as info:
        auth_settings(settings)
    assert "ftp://h.example/mcp" in str(info.value)
    assert "Pa55w0rd" not in str(info.value)
    assert "S3cr3t" not in str(info.value)
