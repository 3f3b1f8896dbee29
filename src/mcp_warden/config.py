"""Every setting, read from the environment in one place, each default written once.

Code below this module takes a `Settings` (or the few fields it needs) as an
argument and never reads `os.environ` itself, so tests and the CLI can build
settings explicitly. Each field of `Settings` is one row of the table: its
default and the variable that overrides it. `from_env` leaves an unset
variable to that default, and a module that offers a default of its own takes
it from `DEFAULTS`, never from a second literal.

Secrets (the master keys, the Redis password, a token) can also come from a
file, so that they never sit in the process environment, where
/proc/<pid>/environ, crash reporters and child processes can read them. For a
secret variable such as MCP_ENCRYPTION_KEY, in this order:

1. `MCP_ENCRYPTION_KEY_FILE=/path`: the file's text (the `_FILE` convention of
   container platforms). Setting it and MCP_ENCRYPTION_KEY is an error.
2. `$CREDENTIALS_DIRECTORY/mcp_encryption_key` (the variable's name in lower
   case), when systemd passes that credential (`LoadCredential=`). The
   variable set as well is an error.
3. `MCP_ENCRYPTION_KEY` itself.

Files are read by `credentials.files.read_secret`: never through a link,
owned by this user and refused when group or others can access them (a
systemd credential may be root's and 0440: see there why), trailing newline
stripped.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from mcp_warden.credentials.files import read_secret
from mcp_warden.errors import ConfigError

ScavioProfile = Literal["scavio-v2", "tutorial"]
SCAVIO_PROFILES: tuple[ScavioProfile, ...] = ("scavio-v2", "tutorial")

Parse = Callable[[str, str], object]
"""(variable, its non-empty text) -> the field's value, or ConfigError naming the variable."""


def _text(_name: str, raw: str) -> str:
    return raw


def _path(_name: str, raw: str) -> Path:
    return Path(raw)


def _whole(*, minimum: int) -> Parse:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number") from None
        if value < minimum:
            raise ConfigError(f"{name}={value} is below the minimum of {minimum}")
        return value

    return parse


def _port(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a TCP port (0-65535; 0 picks a free one)")
    return value


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _profile(name: str, raw: str) -> ScavioProfile:
    for profile in SCAVIO_PROFILES:
        if raw == profile:
            return profile
    raise ConfigError(
        f"{name}={raw!r} is not a known profile; use one of {', '.join(SCAVIO_PROFILES)}"
    )


def _flag(name: str, raw: str) -> bool:
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a flag; use 1 or 0")


def _base_url(_name: str, raw: str) -> str:
    return raw.rstrip("/")


def _actor(name: str, raw: str) -> str:
    return _check_actor(raw, f"{name} must be at most 200 printable characters")


def parse_workers(name: str, raw: str) -> int:
    """A number of `serve` processes: a whole number from 1, or `auto` (the usable cores)."""
    if raw == "auto":
        return len(os.sched_getaffinity(0))  # the cores this process may run on, not all
    if raw.isascii() and raw.isdigit() and int(raw) >= 1:
        return int(raw)
    raise ConfigError(
        f"{name}={raw!r} is not a number of processes; use a whole number from 1, "
        "or auto (one per core this process may use)"
    )


def _urls(name: str, raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    if not urls or any("://" not in u for u in urls):
        raise ConfigError(f"{name} must be a comma-separated list of URLs")
    return urls


def _env(variable: str, parse: Parse = _text, *, secret: bool = False) -> dict[str, Any]:
    """A field's metadata: the environment variable that sets it, and how its text is read.

    `secret`: it may also come from `VARIABLE_FILE` or a systemd credential.
    """
    return {"env": variable, "parse": parse, "secret": secret}


FILE_SUFFIX = "_FILE"
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"


def credential_name(variable: str) -> str:
    """The systemd credential that holds a secret variable: its name in lower case."""
    return variable.lower()


def _secret_text(variable: str, env: Mapping[str, str]) -> str | None:
    """A secret variable's text: from VARIABLE_FILE, a systemd credential, or the variable."""
    value = env.get(variable) or None
    file_variable = variable + FILE_SUFFIX
    file_name = env.get(file_variable)
    credentials = env.get(CREDENTIALS_DIRECTORY)
    if file_name:
        if value is not None:
            raise ConfigError(
                f"both {variable} and {file_variable} are set; set only {file_variable} "
                f"(the secret stays out of the environment) and unset {variable}"
            )
        path = Path(file_name)
        systemd = credentials is not None and credentials != "" and path.parent == Path(credentials)
        return read_secret(path, what=file_variable, systemd=systemd)
    if credentials:
        name = credential_name(variable)
        path = Path(credentials) / name
        if os.path.lexists(path):
            if value is not None:
                raise ConfigError(
                    f"{variable} is set and systemd passes the credential {name} "
                    f"({path}); unset {variable}"
                )
            return read_secret(path, what=f"the systemd credential {name}", systemd=True)
    return value


def _jwks_in(keys_dir: Path) -> str:
    """MCP_JWKS when it is not set: the JWKS the issuer publishes in MCP_KEYS_DIR."""
    return str(keys_dir / "jwks.json")


_KEYS_DIR = Path("keys")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: each field is a setting, its default and its variable.

    Secret-bearing fields (and URLs, which may hold a password or a query
    token) are excluded from repr.
    """

    encryption_key: str | None = field(
        default=None, repr=False, metadata=_env("MCP_ENCRYPTION_KEY", secret=True)
    )
    new_encryption_key: str | None = field(
        default=None, repr=False, metadata=_env("MCP_NEW_ENCRYPTION_KEY", secret=True)
    )
    fernet_key: str | None = field(
        default=None, repr=False, metadata=_env("MCP_FERNET_KEY", secret=True)
    )
    credentials_file: Path = field(
        default=Path("mcp_credentials.enc"), metadata=_env("MCP_CREDENTIALS_FILE", _path)
    )
    rotation_log: Path = field(
        default=Path("rotation_log.jsonl"), metadata=_env("MCP_ROTATION_LOG", _path)
    )
    rotation_max_age_days: int = field(
        default=30, metadata=_env("MCP_ROTATION_MAX_AGE_DAYS", _whole(minimum=1))
    )
    keys_dir: Path = field(default=_KEYS_DIR, metadata=_env("MCP_KEYS_DIR", _path))
    # from_env: unset, it follows MCP_KEYS_DIR
    jwks: str = field(default=_jwks_in(_KEYS_DIR), repr=False, metadata=_env("MCP_JWKS"))
    token_issuer: str = field(default="mcp-warden", metadata=_env("MCP_TOKEN_ISSUER"))
    token_audience: str = field(
        default="http://127.0.0.1:8000/mcp", metadata=_env("MCP_TOKEN_AUDIENCE")
    )
    token_max_ttl: int = field(
        default=86_400, metadata=_env("MCP_TOKEN_MAX_TTL", _whole(minimum=1))
    )
    token_leeway: int = field(default=30, metadata=_env("MCP_TOKEN_LEEWAY", _whole(minimum=0)))
    jwks_refresh_seconds: float = field(
        default=1.0, metadata=_env("MCP_JWKS_REFRESH_SECONDS", _seconds)
    )
    # how old an https JWKS may grow before it is fetched again
    jwks_max_age_seconds: float = field(
        default=60.0, metadata=_env("MCP_JWKS_MAX_AGE_SECONDS", _seconds)
    )
    revocation_url: str = field(
        default="sqlite:///./revocations.db", repr=False, metadata=_env("MCP_REVOCATION_URL")
    )
    # the password of the Redis in MCP_REVOCATION_URL and MCP_CLIENTS_URL, kept out of the URLs
    redis_password: str | None = field(
        default=None, repr=False, metadata=_env("MCP_REDIS_PASSWORD", secret=True)
    )
    # the password of the Sentinels of a redis+sentinel:// URL (their requirepass or ACL user)
    redis_sentinel_password: str | None = field(
        default=None, repr=False, metadata=_env("MCP_REDIS_SENTINEL_PASSWORD", secret=True)
    )
    # replicas that must hold a revocation or a client change before it is reported done
    # (Redis WAIT); None: 1 for a Sentinel URL, 0 for one Redis
    redis_wait_replicas: int | None = field(
        default=None, metadata=_env("MCP_REDIS_WAIT_REPLICAS", _whole(minimum=0))
    )
    revocation_refresh_seconds: float = field(
        default=0.5, metadata=_env("MCP_REVOCATION_REFRESH_SECONDS", _seconds)
    )
    revocation_stale_seconds: float = field(
        default=30.0, metadata=_env("MCP_REVOCATION_STALE_SECONDS", _seconds)
    )
    token: str | None = field(default=None, repr=False, metadata=_env("MCP_TOKEN", secret=True))
    # serve, HTTP: DPoP (RFC 9449). 1: refuse every token without a key binding (cnf.jkt)
    require_dpop: bool = field(default=False, metadata=_env("MCP_REQUIRE_DPOP", _flag))
    # how far in the past and in the future a DPoP proof's iat may be
    dpop_max_age_seconds: float = field(
        default=60.0, metadata=_env("MCP_DPOP_MAX_AGE_SECONDS", _seconds)
    )
    dpop_future_seconds: float = field(
        default=5.0, metadata=_env("MCP_DPOP_FUTURE_SECONDS", _seconds)
    )
    # 1: DPoP proofs must carry a server nonce (RFC 9449 section 8), keyed by MCP_DPOP_NONCE_KEY
    dpop_nonce: bool = field(default=False, metadata=_env("MCP_DPOP_NONCE", _flag))
    # the secret every replica shares to make and check nonces (at least 32 characters)
    dpop_nonce_key: str | None = field(
        default=None, repr=False, metadata=_env("MCP_DPOP_NONCE_KEY", secret=True)
    )
    scavio_base_url: str = field(
        default="https://api.scavio.dev", repr=False, metadata=_env("SCAVIO_BASE_URL", _base_url)
    )
    scavio_profile: ScavioProfile = field(
        default="scavio-v2", metadata=_env("SCAVIO_PROFILE", _profile)
    )
    scavio_credential: str = field(default="scavio_api_key", metadata=_env("MCP_SCAVIO_CREDENTIAL"))
    # per upstream attempt (serve)
    scavio_timeout: float = field(default=15.0, metadata=_env("SCAVIO_TIMEOUT_SECONDS", _seconds))
    # serve's audit lines; None: stderr
    audit_log: Path | None = field(default=None, metadata=_env("MCP_AUDIT_LOG", _path))
    # serve, HTTP: requests in progress at once; beyond it, 503
    max_concurrent_requests: int = field(
        default=100, metadata=_env("MCP_MAX_CONCURRENT_REQUESTS", _whole(minimum=1))
    )
    # serve, HTTP: processes accepting on one port (`auto` becomes the usable cores)
    serve_workers: int = field(default=1, metadata=_env("MCP_SERVE_WORKERS", parse_workers))
    # serve and issuer serve: Prometheus /metrics on its own address; None: not served
    metrics_address: str = field(default="127.0.0.1", metadata=_env("MCP_METRICS_HOST"))
    metrics_port: int | None = field(default=None, metadata=_env("MCP_METRICS_PORT", _port))
    # the issuer service (`issuer serve`, `clients`): its client registry, shared by its processes
    clients_url: str = field(
        default="sqlite:///./clients.db", repr=False, metadata=_env("MCP_CLIENTS_URL")
    )
    # the MCP servers (token `aud`) the issuer serves; empty: MCP_TOKEN_AUDIENCE alone
    issuer_resources: tuple[str, ...] = field(
        default=(), metadata=_env("MCP_ISSUER_RESOURCES", _urls)
    )
    # failed client authentications allowed per minute, per client and per address
    issuer_auth_failures: int = field(
        default=10, metadata=_env("MCP_ISSUER_AUTH_FAILURES", _whole(minimum=1))
    )
    # who the rotation log names; from_env: unset, user@host
    actor: str = field(default="mcp-warden", metadata=_env("MCP_ACTOR", _actor))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: `os.environ`); an empty variable is unset.

        Secret settings may come from files instead (see the module's docstring).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            variable, parse = setting.metadata["env"], setting.metadata["parse"]
            raw = _secret_text(variable, env) if setting.metadata["secret"] else env.get(variable)
            if raw:
                values[setting.name] = parse(variable, raw)
        # The two defaults that depend on something else than the table.
        values.setdefault("jwks", _jwks_in(values.get("keys_dir", _KEYS_DIR)))
        values.setdefault("actor", _login_actor(env))
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (CLI flags override the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def require_encryption_key(self) -> str:
        """The master key's hex text, or a ConfigError saying how to make one."""
        if self.encryption_key is None:
            raise ConfigError(
                "MCP_ENCRYPTION_KEY is not set; create one with `mcp-warden keygen` "
                "(64 hex characters) and put it in a 0600 file named by "
                "MCP_ENCRYPTION_KEY_FILE (or export MCP_ENCRYPTION_KEY)"
            )
        return self.encryption_key


DEFAULTS = Settings()
"""Every default, for code that offers one without being handed `Settings` (never a literal)."""


def _login_actor(env: Mapping[str, str]) -> str:
    """The rotation log's actor when MCP_ACTOR is not set: user@host, checked the same way."""
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
