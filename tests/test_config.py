"""Settings come from the environment in one place, with clear errors."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from mcp_warden import config
from mcp_warden.config import DEFAULTS, Settings
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
        ("MCP_SERVE_WORKERS", "0"),
        ("MCP_SERVE_WORKERS", "2.5"),
        ("MCP_SERVE_WORKERS", "all"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_serve_workers_is_a_count_or_the_usable_cores() -> None:
    assert Settings.from_env({"MCP_SERVE_WORKERS": "3"}).serve_workers == 3
    auto = Settings.from_env({"MCP_SERVE_WORKERS": "auto"}).serve_workers
    assert auto == len(os.sched_getaffinity(0))


def test_missing_master_key_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="mcp-warden keygen"):
        Settings.from_env({}).require_encryption_key()


# Every variable and its default, as documented: a contract, pinned here on purpose.
CONTRACT: dict[str, tuple[str, object]] = {
    "encryption_key": ("MCP_ENCRYPTION_KEY", None),
    "new_encryption_key": ("MCP_NEW_ENCRYPTION_KEY", None),
    "fernet_key": ("MCP_FERNET_KEY", None),
    "credentials_file": ("MCP_CREDENTIALS_FILE", Path("mcp_credentials.enc")),
    "rotation_log": ("MCP_ROTATION_LOG", Path("rotation_log.jsonl")),
    "rotation_max_age_days": ("MCP_ROTATION_MAX_AGE_DAYS", 30),
    "keys_dir": ("MCP_KEYS_DIR", Path("keys")),
    "jwks": ("MCP_JWKS", "keys/jwks.json"),
    "token_issuer": ("MCP_TOKEN_ISSUER", "mcp-warden"),
    "token_audience": ("MCP_TOKEN_AUDIENCE", "http://127.0.0.1:8000/mcp"),
    "token_max_ttl": ("MCP_TOKEN_MAX_TTL", 86_400),
    "token_leeway": ("MCP_TOKEN_LEEWAY", 30),
    "jwks_refresh_seconds": ("MCP_JWKS_REFRESH_SECONDS", 1.0),
    "jwks_max_age_seconds": ("MCP_JWKS_MAX_AGE_SECONDS", 60.0),
    "revocation_url": ("MCP_REVOCATION_URL", "sqlite:///./revocations.db"),
    "redis_password": ("MCP_REDIS_PASSWORD", None),
    "redis_sentinel_password": ("MCP_REDIS_SENTINEL_PASSWORD", None),
    "redis_wait_replicas": ("MCP_REDIS_WAIT_REPLICAS", None),
    "revocation_refresh_seconds": ("MCP_REVOCATION_REFRESH_SECONDS", 0.5),
    "revocation_stale_seconds": ("MCP_REVOCATION_STALE_SECONDS", 30.0),
    "token": ("MCP_TOKEN", None),
    "require_dpop": ("MCP_REQUIRE_DPOP", False),
    "dpop_max_age_seconds": ("MCP_DPOP_MAX_AGE_SECONDS", 60.0),
    "dpop_future_seconds": ("MCP_DPOP_FUTURE_SECONDS", 5.0),
    "dpop_nonce": ("MCP_DPOP_NONCE", False),
    "dpop_nonce_key": ("MCP_DPOP_NONCE_KEY", None),
    "scavio_base_url": ("SCAVIO_BASE_URL", "https://api.scavio.dev"),
    "scavio_profile": ("SCAVIO_PROFILE", "scavio-v2"),
    "scavio_credential": ("MCP_SCAVIO_CREDENTIAL", "scavio_api_key"),
    "scavio_timeout": ("SCAVIO_TIMEOUT_SECONDS", 15.0),
    "audit_log": ("MCP_AUDIT_LOG", None),
    "max_concurrent_requests": ("MCP_MAX_CONCURRENT_REQUESTS", 100),
    "serve_workers": ("MCP_SERVE_WORKERS", 1),
    "metrics_address": ("MCP_METRICS_HOST", "127.0.0.1"),
    "metrics_port": ("MCP_METRICS_PORT", None),
    "clients_url": ("MCP_CLIENTS_URL", "sqlite:///./clients.db"),
    "issuer_resources": ("MCP_ISSUER_RESOURCES", ()),
    "issuer_auth_failures": ("MCP_ISSUER_AUTH_FAILURES", 10),
    "actor": ("MCP_ACTOR", "mcp-warden"),
}


def test_every_variable_and_default_is_unchanged() -> None:
    table = {f.name: (f.metadata["env"], getattr(DEFAULTS, f.name)) for f in fields(Settings)}
    assert table == CONTRACT


def test_the_dataclass_and_from_env_share_their_defaults() -> None:
    built, read = Settings(), Settings.from_env({})
    for setting in fields(Settings):
        if setting.name != "actor":  # from_env: user@host, a default that depends on the login
            assert getattr(read, setting.name) == getattr(built, setting.name), setting.name
    assert read.actor != built.actor


def test_the_readme_documents_every_variable() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    secrets = {f.metadata["env"] + "_FILE" for f in fields(Settings) if f.metadata["secret"]}
    assert documented == {variable for variable, _ in CONTRACT.values()} | secrets


# Names under which a module could restate a setting's default (a field name's last words).
def _tails(name: str) -> set[str]:
    words = name.split("_")
    return {"_".join(words[i:]) for i in range(len(words))} - {"seconds", "days", "file", "log"}


def _named_literals(tree: ast.AST) -> Iterator[tuple[str, ast.Constant]]:
    """(name, literal) for every parameter default and every constant assigned to a name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            pairs = list(
                zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True)
            )
            pairs += [
                (a, d)
                for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)
                if d is not None
            ]
            named = [(arg.arg, value) for arg, value in pairs]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = [(t.id, node.value) for t in targets if isinstance(t, ast.Name) and node.value]
        else:
            continue
        yield from ((name, value) for name, value in named if isinstance(value, ast.Constant))


def test_no_module_restates_a_default() -> None:
    """A default lives in config.py alone: no `leeway=30`, `max_ttl=86_400`, `TIMEOUT = 15.0`."""
    by_tail: dict[str, list[object]] = {}
    for setting in fields(Settings):
        default = getattr(DEFAULTS, setting.name)
        if isinstance(default, int | float | str) and not isinstance(default, bool):
            for tail in _tails(setting.name):
                by_tail.setdefault(tail, []).append(default)
    package = Path(config.__file__).parent
    repeats = set()
    for path in package.rglob("*.py"):
        if path.name == "config.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(package).as_posix()
        for name, literal in _named_literals(tree):
            for tail, defaults in by_tail.items():
                matches = name.lower() == tail or name.lower().endswith("_" + tail)
                if matches and literal.value in defaults:
                    repeats.add((where, name))
        # And the one default too large to be a coincidence appears nowhere else, under any name.
        if any(
            isinstance(n, ast.Constant) and n.value == DEFAULTS.token_max_ttl
            for n in ast.walk(tree)
        ):
            repeats.add((where, str(DEFAULTS.token_max_ttl)))
    assert repeats == set()
