"""Secrets from files (`VARIABLE_FILE`) and systemd credentials, never the environment.

Unit tests of each rule of `Settings.from_env` (config.py), then real processes:
the CLI's one-line error, a Redis that requires a password read from a file, and
`mcp-warden serve` serving a call that needs the master key it read from a file,
with that key absent from its /proc/<pid>/environ.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest
import redis

from mcp_warden.config import CREDENTIALS_DIRECTORY, Settings, credential_name
from mcp_warden.demo.harness import call_http
from mcp_warden.errors import ConfigError
from mcp_warden.issuer.registry import open_registry
from mcp_warden.redisconn import connect
from mcp_warden.tokens.replay import open_replay_cache
from mcp_warden.tokens.revocation import open_denylist
from tests.support.redis_server import RedisServer
from tests.support.server import deployment, run

KEY = "ab" * 32
SECRET_VARIABLES = [f.metadata["env"] for f in fields(Settings) if f.metadata["secret"]]
FIELD_OF = {f.metadata["env"]: f.name for f in fields(Settings)}


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def refused(env: dict[str, str]) -> str:
    """The one-line message of the ConfigError `from_env(env)` raises."""
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    message = str(error.value)
    assert "\n" not in message
    assert KEY not in message
    return message


def test_the_secret_settings() -> None:
    assert SECRET_VARIABLES == [
        "MCP_ENCRYPTION_KEY",
        "MCP_NEW_ENCRYPTION_KEY",
        "MCP_FERNET_KEY",
        "MCP_REDIS_PASSWORD",
        "MCP_REDIS_SENTINEL_PASSWORD",
        "MCP_TOKEN",
        "MCP_DPOP_NONCE_KEY",
    ]


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_every_secret_reads_from_its_file_without_the_trailing_newline(
    tmp_path: Path, variable: str, ending: str
) -> None:
    path = secret_file(tmp_path / "secret", KEY + ending)
    settings = Settings.from_env({f"{variable}_FILE": str(path)})
    assert getattr(settings, FIELD_OF[variable]) == KEY
    assert KEY not in repr(settings)


def test_only_one_trailing_newline_goes(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "pw", " pass word \n\n")
    assert Settings.from_env({"MCP_REDIS_PASSWORD_FILE": str(path)}).redis_password == (
        " pass word \n"
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o400])
def test_a_file_group_or_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path / "master.key", KEY, mode)
    env = {"MCP_ENCRYPTION_KEY_FILE": str(path)}
    if mode == 0o400:  # owner-only is fine, read-only or not
        assert Settings.from_env(env).encryption_key == KEY
        return
    message = refused(env)
    assert message.startswith(f"MCP_ENCRYPTION_KEY_FILE {path} is accessible to group or others")
    assert f"(mode {mode:03o})" in message
    assert f"`chmod 600 {path}`" in message


def test_the_variable_and_its_file_together_are_an_error(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "master.key", KEY)
    message = refused({"MCP_ENCRYPTION_KEY": KEY, "MCP_ENCRYPTION_KEY_FILE": str(path)})
    assert message.startswith("both MCP_ENCRYPTION_KEY and MCP_ENCRYPTION_KEY_FILE are set")


def test_an_empty_variable_is_unset_so_the_file_counts(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "master.key", KEY)
    env = {"MCP_ENCRYPTION_KEY": "", "MCP_ENCRYPTION_KEY_FILE": str(path)}
    assert Settings.from_env(env).encryption_key == KEY


def test_a_link_is_not_followed(tmp_path: Path) -> None:
    real = secret_file(tmp_path / "master.key", KEY)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    message = refused({"MCP_ENCRYPTION_KEY_FILE": str(link)})
    assert f"MCP_ENCRYPTION_KEY_FILE {link} is a symbolic link" in message


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(mode=0o700), "is not a regular file"),
        (lambda p: os.mkfifo(p, 0o600), "is not a regular file"),  # and no hang
        (lambda p: secret_file(p, ""), "is empty"),
        (lambda p: secret_file(p, "\n"), "is empty"),
        (lambda p: (p.write_bytes(b"\xff\xfe"), p.chmod(0o600)), "is not UTF-8 text"),
        (lambda p: (p.write_bytes(b"k" * 70_000), p.chmod(0o600)), "is over 64 KiB"),
    ],
)
def test_what_is_not_a_secret_file_is_refused(
    tmp_path: Path, make: Callable[[Path], object], words: str
) -> None:
    path = tmp_path / "master.key"
    make(path)
    message = refused({"MCP_ENCRYPTION_KEY_FILE": str(path)})
    assert message.startswith(f"MCP_ENCRYPTION_KEY_FILE {path} {words}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_another_users_file_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "master.key", KEY)
    os.chown(path, 65534, 65534)
    message = refused({"MCP_ENCRYPTION_KEY_FILE": str(path)})
    assert "belongs to another user (uid 65534)" in message


# systemd credentials: $CREDENTIALS_DIRECTORY/<variable in lower case>


def credentials(tmp_path: Path, mode: int = 0o400, **secrets: str) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o500, exist_ok=True)
    directory.chmod(0o700)
    for name, text in secrets.items():
        secret_file(directory / name, text, mode)
    directory.chmod(0o500)
    return directory


def test_a_systemd_credential_is_used(tmp_path: Path) -> None:
    directory = credentials(tmp_path, mcp_encryption_key=KEY + "\n", mcp_redis_password="pw")
    settings = Settings.from_env({CREDENTIALS_DIRECTORY: str(directory)})
    assert (settings.encryption_key, settings.redis_password) == (KEY, "pw")
    assert settings.new_encryption_key is None  # no such credential: unset
    assert credential_name("MCP_NEW_ENCRYPTION_KEY") == "mcp_new_encryption_key"


@pytest.mark.parametrize(("mode", "accepted"), [(0o440, True), (0o444, False), (0o460, False)])
def test_a_credential_may_have_the_group_read_bit_of_systemds_acl(
    tmp_path: Path, mode: int, accepted: bool
) -> None:
    directory = credentials(tmp_path, mode, mcp_encryption_key=KEY)
    env = {CREDENTIALS_DIRECTORY: str(directory)}
    if accepted:
        assert Settings.from_env(env).encryption_key == KEY
    else:
        message = refused(env)
        assert message.startswith(
            f"the systemd credential mcp_encryption_key {directory / 'mcp_encryption_key'} "
            "is accessible to group or others"
        )


def test_the_variable_and_a_credential_together_are_an_error(tmp_path: Path) -> None:
    directory = credentials(tmp_path, mcp_encryption_key=KEY)
    message = refused({CREDENTIALS_DIRECTORY: str(directory), "MCP_ENCRYPTION_KEY": KEY})
    assert message.startswith("MCP_ENCRYPTION_KEY is set and systemd passes the credential")


def test_the_file_variable_wins_over_a_credential_and_may_point_into_the_directory(
    tmp_path: Path,
) -> None:
    directory = credentials(tmp_path, 0o440, mcp_encryption_key="ignored", master=KEY)
    # Environment=MCP_ENCRYPTION_KEY_FILE=%d/master: systemd's rules apply to it (0440 is fine)
    env = {
        CREDENTIALS_DIRECTORY: str(directory),
        "MCP_ENCRYPTION_KEY_FILE": str(directory / "master"),
    }
    assert Settings.from_env(env).encryption_key == KEY
    # the same mode outside the credentials directory is refused
    elsewhere = secret_file(tmp_path / "master", KEY, 0o440)
    env["MCP_ENCRYPTION_KEY_FILE"] = str(elsewhere)
    assert "is accessible to group or others" in refused(env)


def test_a_credential_that_is_a_link_is_refused(tmp_path: Path) -> None:
    directory = credentials(tmp_path)
    directory.chmod(0o700)
    (directory / "mcp_encryption_key").symlink_to(secret_file(tmp_path / "k", KEY))
    assert "is a symbolic link" in refused({CREDENTIALS_DIRECTORY: str(directory)})


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "master.key", KEY, 0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "SCAVIO_"))}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_warden", "cred", "list"],
        env={**env, "MCP_ENCRYPTION_KEY_FILE": str(path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"mcp-warden: MCP_ENCRYPTION_KEY_FILE {path} is accessible to group or others "
        f"(mode 644); mcp-warden refuses to read a secret from it: run `chmod 600 {path}`\n"
    )


# The Redis password: MCP_REDIS_PASSWORD(_FILE), for MCP_REVOCATION_URL and MCP_CLIENTS_URL


def test_a_url_with_a_password_and_the_password_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="remove the password from MCP_CLIENTS_URL"):
        connect("redis://:pw@127.0.0.1:1/0", setting="MCP_CLIENTS_URL", password="pw")


@pytest.mark.slow
def test_the_redis_password_from_a_file_opens_every_store(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    password = "s3cr3t-redis-password"
    redis.Redis(port=redis_server.port).config_set("requirepass", password)
    path = secret_file(tmp_path / "redis.pw", password + "\n")
    env = {"MCP_REVOCATION_URL": redis_server.url, "MCP_CLIENTS_URL": redis_server.url}
    client, _ = connect(redis_server.url)
    with pytest.raises(redis.AuthenticationError):  # no password: Redis refuses
        client.ping()
    settings = Settings.from_env({**env, "MCP_REDIS_PASSWORD_FILE": str(path)})
    denylist = open_denylist(settings, follow=False)
    denylist.revoke_jti("j1", exp=2**31)
    registry = open_registry(settings)
    assert registry.all() == []
    registry.close()
    replay = open_replay_cache(settings)  # the DPoP replay cache, in MCP_REVOCATION_URL's Redis
    assert replay.first_use("jkt", "proof-1", until=2**31)
    replay.close()
    acl_user = f"redis://default@127.0.0.1:{redis_server.port}/0"  # the URL may name the user
    client, _ = connect(acl_user, password=password)
    assert client.zscore("mcp-warden:revocation:jti", "j1") == 2**31


# `mcp-warden serve` with the master key in a file


@pytest.mark.slow
@pytest.mark.parametrize("given_as", ["MCP_ENCRYPTION_KEY_FILE", "systemd credential"])
def test_serve_uses_the_key_file_and_the_key_is_not_in_its_environ(
    tmp_path: Path, given_as: str
) -> None:
    with deployment(tmp_path) as lab:
        master = lab.env.pop("MCP_ENCRYPTION_KEY")
        if given_as == "MCP_ENCRYPTION_KEY_FILE":
            key_file = secret_file(tmp_path / "master.key", master + "\n")
            env = {"MCP_ENCRYPTION_KEY_FILE": str(key_file)}
        else:
            directory = credentials(tmp_path, mcp_encryption_key=master + "\n")
            key_file = directory / "mcp_encryption_key"
            env = {CREDENTIALS_DIRECTORY: str(directory)}
        with lab.serve(env=env) as server:
            token = lab.mint(["web_search"])
            result = run(lambda: call_http(server.url, token, "web_search", {"query": "q"}))
            assert not result.is_error  # the stub accepted the key decrypted with the master key
            environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes()
            assert server.proc.poll() is None  # read while it runs
        names = [entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry]
        assert next(iter(env)).encode() in names  # what it was given instead
        assert b"MCP_ENCRYPTION_KEY" not in names
        assert master.encode() not in environ
        assert lab.api_key.encode() not in environ
        assert stat.S_IMODE(key_file.stat().st_mode) in (0o600, 0o400)
