"""Every setting, read from the environment in one place.

Code below this module takes a `Settings` (or the few fields it needs) as an
argument and never reads `os.environ` itself, so tests and the CLI can build
settings explicitly.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mcp_warden.errors import ConfigError

ScavioProfile = Literal["scavio-v2", "tutorial"]
SCAVIO_PROFILES: tuple[ScavioProfile, ...] = ("scavio-v2", "tutorial")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Secret-bearing fields (and URLs, which may hold a password or
    a query token) are excluded from repr."""

    encryption_key: str | None = field(default=None, repr=False)
    new_encryption_key: str | None = field(default=None, repr=False)
    fernet_key: str | None = field(default=None, repr=False)
    credentials_file: Path = Path("mcp_credentials.enc")
    rotation_log: Path = Path("rotation_log.jsonl")
    rotation_max_age_days: int = 30
    keys_dir: Path = Path("keys")
    jwks: str = field(default="keys/jwks.json", repr=False)
    token_issuer: str = "mcp-warden"  # noqa: S105  (a name, not a secret)
    token_audience: str = "http://127.0.0.1:8000/mcp"  # noqa: S105
    token_max_ttl: int = 86_400
    token_leeway: int = 30
    jwks_refresh_seconds: float = 1.0
    jwks_max_age_seconds: float = 60.0  # MCP_JWKS_MAX_AGE_SECONDS: an https JWKS is refetched
    revocation_url: str = field(default="sqlite:///./revocations.db", repr=False)
    revocation_refresh_seconds: float = 0.5
    revocation_stale_seconds: float = 30.0
    token: str | None = field(default=None, repr=False)
    scavio_base_url: str = field(default="https://api.scavio.dev", repr=False)
    scavio_profile: ScavioProfile = "scavio-v2"
    scavio_credential: str = "scavio_api_key"
    scavio_timeout: float = 15.0  # SCAVIO_TIMEOUT_SECONDS: per upstream attempt (serve)
    audit_log: Path | None = None  # MCP_AUDIT_LOG: serve's audit lines; unset: stderr
    max_concurrent_requests: int = 100  # MCP_MAX_CONCURRENT_REQUESTS: serve, HTTP; others 503
    actor: str = "mcp-warden"  # MCP_ACTOR: who the rotation log names; from_env: user@host

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: `os.environ`)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value else None

        keys_dir = Path(get("MCP_KEYS_DIR") or "keys")
        profile = get("SCAVIO_PROFILE") or "scavio-v2"
        if profile not in SCAVIO_PROFILES:
            raise ConfigError(
                f"SCAVIO_PROFILE={profile!r} is not a known profile; "
                f"use one of {', '.join(SCAVIO_PROFILES)}"
            )
        audit = get("MCP_AUDIT_LOG")
        return cls(
            encryption_key=get("MCP_ENCRYPTION_KEY"),
            new_encryption_key=get("MCP_NEW_ENCRYPTION_KEY"),
            fernet_key=get("MCP_FERNET_KEY"),
            credentials_file=Path(get("MCP_CREDENTIALS_FILE") or "mcp_credentials.enc"),
            rotation_log=Path(get("MCP_ROTATION_LOG") or "rotation_log.jsonl"),
            rotation_max_age_days=_int(env, "MCP_ROTATION_MAX_AGE_DAYS", 30, minimum=1),
            keys_dir=keys_dir,
            jwks=get("MCP_JWKS") or str(keys_dir / "jwks.json"),
            token_issuer=get("MCP_TOKEN_ISSUER") or "mcp-warden",
            token_audience=get("MCP_TOKEN_AUDIENCE") or "http://127.0.0.1:8000/mcp",
            token_max_ttl=_int(env, "MCP_TOKEN_MAX_TTL", 86_400, minimum=1),
            token_leeway=_int(env, "MCP_TOKEN_LEEWAY", 30, minimum=0),
            jwks_refresh_seconds=_float(env, "MCP_JWKS_REFRESH_SECONDS", 1.0),
            jwks_max_age_seconds=_float(env, "MCP_JWKS_MAX_AGE_SECONDS", 60.0),
            revocation_url=get("MCP_REVOCATION_URL") or "sqlite:///./revocations.db",
            revocation_refresh_seconds=_float(env, "MCP_REVOCATION_REFRESH_SECONDS", 0.5),
            revocation_stale_seconds=_float(env, "MCP_REVOCATION_STALE_SECONDS", 30.0),
            token=get("MCP_TOKEN"),
            scavio_base_url=(get("SCAVIO_BASE_URL") or "https://api.scavio.dev").rstrip("/"),
            scavio_profile=profile,
            scavio_credential=get("MCP_SCAVIO_CREDENTIAL") or "scavio_api_key",
            scavio_timeout=_float(env, "SCAVIO_TIMEOUT_SECONDS", 15.0),
            audit_log=Path(audit) if audit else None,
            max_concurrent_requests=_int(env, "MCP_MAX_CONCURRENT_REQUESTS", 100, minimum=1),
            actor=_actor(get("MCP_ACTOR"), env),
        )

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (CLI flags override the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def require_encryption_key(self) -> str:
        """The master key's hex text, or a ConfigError saying how to make one."""
        if self.encryption_key is None:
            raise ConfigError(
                "MCP_ENCRYPTION_KEY is not set; create one with `mcp-warden keygen` "
                "and export it (64 hex characters)"
            )
        return self.encryption_key


def _actor(configured: str | None, env: Mapping[str, str]) -> str:
    """Who the rotation log names: MCP_ACTOR, else user@host (checked the same way)."""
    if configured is not None:
        return _check_actor(configured, "MCP_ACTOR must be at most 200 printable characters")
    variable = "USER" if env.get("USER") else "LOGNAME"
    user = env.get(variable)
    if not user:
        variable = "the user name"
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = f"uid{os.getuid()}"
    return _check_actor(
        f"{user}@{socket.gethostname()}",
        f"{variable}@host, the rotation log's actor when MCP_ACTOR is not set, must be at "
        "most 200 printable characters; set MCP_ACTOR to who you are",
    )


def _check_actor(actor: str, error: str) -> str:
    # A newline or escape sequence in the actor would forge lines in `cred log`'s display.
    if len(actor) > 200 or not actor.isprintable():
        raise ConfigError(error)
    return actor


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum of {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value
