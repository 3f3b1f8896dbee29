"""`mcp-warden keys ...` and `mcp-warden token ...` as real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mcp_warden.cli import cli
from mcp_warden.config import Settings
from mcp_warden.demo.harness import cli_env, run_cli
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.revocation.sqlite import SqliteStore
from tests.support.tokens import forge


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(MCP_KEYS_DIR=str(tmp_path / "keys"), MCP_REVOCATION_URL="memory://")


def ok(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    result = run_cli(args, env, input=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(args: list[str], env: dict[str, str], code: int, stdin: str | None = None) -> str:
    result = run_cli(args, env, input=stdin)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def mint(env: dict[str, str], *extra: str) -> str:
    out = ok(
        ["token", "mint", "--tools", "web_search,news", "--ttl", "600", "--sub", "bob", *extra], env
    )
    token = out.strip()
    assert out == token + "\n"
    return token


@pytest.mark.slow
def test_keys_new_list_retire(env: dict[str, str], tmp_path: Path) -> None:
    first = ok(["keys", "new"], env).strip()
    assert len(first) == 43
    assert "keys new" in refused(["keys", "retire", first], env, 1)
    second = ok(["keys", "new"], env).strip()
    rows = {line.split()[0]: line for line in ok(["keys", "list"], env).splitlines()[1:]}
    assert list(rows) == [first, second]
    assert " no " in rows[first]
    assert "after " in rows[first]
    assert rows[second].endswith("yes     no (signing)")
    assert "--force" in refused(["keys", "retire", first], env, 1)
    ok(["keys", "retire", first, "--force"], env)
    jwks = json.loads((tmp_path / "keys" / "jwks.json").read_text())
    assert [k["kid"] for k in jwks["keys"]] == [second]
    assert not (tmp_path / "keys" / f"{first}.pem").exists()


@pytest.mark.slow
def test_mint_and_verify(env: dict[str, str]) -> None:
    ok(["keys", "new"], env)
    token = mint(env)
    claims = json.loads(ok(["token", "verify", token], env))
    assert claims["sub"] == "bob"
    assert claims["tools"] == ["news", "web_search"]
    assert claims["exp"] - claims["iat"] == 600
    assert json.loads(ok(["token", "verify", "-"], env, stdin=token + "\n")) == claims
    ok(["token", "verify", token, "--tool", "news"], env)
    err = refused(["token", "verify", "-", "--tool", "delete_all"], env, 1, stdin=token)
    assert err.startswith("mcp-warden: tool_not_allowed:")


@pytest.mark.slow
def test_verify_refusal_prints_reason_not_token(env: dict[str, str]) -> None:
    ok(["keys", "new"], env)
    token = mint(env)
    flipped = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BAAA")
    for bad, reason in ((flipped, "bad_signature"), (token + ".x", "malformed")):
        err = refused(["token", "verify", bad], env, 1)
        assert err.startswith(f"mcp-warden: {reason}: ")
        assert token[:40] not in err


@pytest.mark.slow
def test_verify_checks_audience_and_issuer_from_the_environment(env: dict[str, str]) -> None:
    ok(["keys", "new"], env)
    token = mint(env, "--aud", "https://other.example/mcp")
    assert refused(["token", "verify", token], env, 1).startswith("mcp-warden: wrong_audience:")
    other = {**env, "MCP_TOKEN_AUDIENCE": "https://other.example/mcp"}
    assert json.loads(ok(["token", "verify", token], other))["aud"] == "https://other.example/mcp"
    other["MCP_TOKEN_ISSUER"] = "someone-else"
    assert refused(["token", "verify", token], other, 1).startswith("mcp-warden: wrong_issuer:")


@pytest.mark.slow
def test_mint_without_keys_says_what_to_do(env: dict[str, str]) -> None:
    err = refused(["token", "mint", "--tools", "a", "--ttl", "60", "--sub", "a"], env, 2)
    assert "keys new" in err


@pytest.mark.slow
def test_a_usage_error_exits_2(env: dict[str, str]) -> None:
    result = run_cli(["token", "revoke", "--jti", "j", "--sub", "s"], env)
    assert result.returncode == 2
    assert "exactly one of" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["token", "mint", "--tools", "*", "--ttl", "60", "--sub", "a"],
        ["token", "mint", "--tools", "a", "--ttl", "0", "--sub", "a"],
        ["token", "mint", "--tools", "a", "--ttl", "86401", "--sub", "a"],
        ["token", "mint", "--tools", "a", "--ttl", "soon", "--sub", "a"],
        ["token", "mint", "--tools", "a", "--ttl", "60"],
        ["token", "revoke"],
        ["token", "revoke", "tok", "--jti", "j"],
        ["token", "revoke", "--exp", "5", "--sub", "s"],
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str]) -> None:
    """Checked in-process (click's runner) to keep the suite fast; exit 2 and no output."""
    keys = tmp_path / "keys"
    KeyDir(keys).new()
    cfg = Settings(keys_dir=keys, jwks=str(keys / "jwks.json"), revocation_url="memory://")
    result = CliRunner().invoke(cli, args, obj=cfg)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


@pytest.mark.slow
def test_revoke_forms(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "MCP_REVOCATION_URL": f"sqlite:///{tmp_path}/revocations.db"}
    ok(["keys", "new"], env)
    result = run_cli(["token", "revoke", "-"], env, input=mint(env))
    assert result.returncode == 0
    assert "revoked jti" in result.stderr
    # an expired but well-signed token needs no revoking
    kid, key = KeyDir(tmp_path / "keys").signing_key()
    now = int(time.time())
    claims = {
        "iss": "mcp-warden",
        "sub": "bob",
        "aud": "http://127.0.0.1:8000/mcp",
        "iat": now - 100,
        "exp": now - 10,
        "jti": "old",
        "tools": ["a"],
    }
    expired = forge(key, {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, claims)
    result = run_cli(["token", "revoke", expired], env)
    assert result.returncode == 0
    assert "already expired" in result.stderr
    assert expired not in result.stderr
    # junk is refused with its reason
    assert refused(["token", "revoke", "a.b.c"], env, 1).startswith("mcp-warden: malformed:")


class RecordingDenylist(MemoryDenylist):
    """A memory denylist that also records what the CLI asked it to revoke."""

    def __init__(self) -> None:
        super().__init__()
        self.jtis: dict[str, int] = {}
        self.subs: dict[str, int] = {}

    def revoke_jti(self, jti: str, exp: int) -> None:
        self.jtis[jti] = exp
        super().revoke_jti(jti, exp)

    def revoke_sub(self, sub: str, at: int) -> None:
        self.subs[sub] = at
        super().revoke_sub(sub, at)


def test_revoke_then_verify_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revocation through the CLI code path, sharing one memory denylist between commands.

    (Across processes this needs a shared backend: see the sqlite test below.)
    """
    denylist = RecordingDenylist()
    monkeypatch.setattr("mcp_warden.cli.tokens.open_denylist", lambda _settings, **_kw: denylist)
    cfg = Settings(keys_dir=tmp_path / "keys", jwks=str(tmp_path / "keys" / "jwks.json"))
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(cli, list(args), obj=cfg, input=stdin)
        return result.exit_code, result.stdout, result.stderr

    assert run("keys", "new")[0] == 0
    code, token, _ = run("token", "mint", "--tools", "a", "--ttl", "600", "--sub", "carol")
    token = token.strip()
    assert run("token", "verify", token)[0] == 0
    assert run("token", "revoke", "-", stdin=token)[0] == 0
    code, _, err = run("token", "verify", token)
    assert (code, err.split(":")[1].strip()) == (1, "revoked")
    assert run("token", "revoke", token)[2].strip() == "token already revoked"
    other = run("token", "mint", "--tools", "a", "--ttl", "600", "--sub", "dave")[1].strip()
    assert run("token", "verify", other)[0] == 0
    assert run("token", "revoke", "--sub", "dave")[0] == 0
    code, _, err = run("token", "verify", other)
    assert (code, err.split(":")[1].strip()) == (1, "revoked")
    now = int(time.time())
    leeway = cfg.token_leeway  # every token of dave with iat <= now + leeway
    assert denylist.subs["dave"] in (now - 1 + leeway, now + leeway)
    assert run("token", "revoke", "--jti", "abc", "--exp", "1900000000")[0] == 0
    assert run("token", "revoke", "--jti", "xyz")[0] == 0
    assert denylist.jtis["abc"] == 1_900_000_000
    assert denylist.jtis["xyz"] - now in range(86_399, 86_402)  # now + max TTL


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--jti", "j"], ["--sub", "s"], ["-"]])
def test_revoke_refuses_memory_url_because_no_server_can_see_it(
    env: dict[str, str], args: list[str]
) -> None:
    err = refused(["token", "revoke", *args], env, 2, stdin="a.b.c")
    assert "memory://" in err
    assert "no server would see the revocation" in err
    assert "sqlite:////absolute/path or redis://host:port/db" in err


@pytest.mark.slow
def test_revoke_prints_the_absolute_store_location(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    env = {**env, "MCP_REVOCATION_URL": "sqlite:///state/revocations.db"}
    where = f" in SQLite database {tmp_path}/state/revocations.db\n"
    ok(["keys", "new"], env)
    for args, stdin in ((["--jti", "j"], None), (["--sub", "s"], None), (["-"], mint(env))):
        result = run_cli(["token", "revoke", *args], env, input=stdin, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr.startswith("revoked ")
        assert result.stderr.endswith(where), result.stderr
    assert (tmp_path / "state" / "revocations.db").is_file()


@pytest.mark.slow
def test_revoke_refuses_a_symlinked_revocation_database(
    env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "precious"
    target.write_text("keep\n")
    (tmp_path / "revocations.db").symlink_to(target)
    env = {**env, "MCP_REVOCATION_URL": f"sqlite:///{tmp_path}/revocations.db"}
    err = refused(["token", "revoke", "--jti", "j"], env, 2)
    assert "is a symbolic link" in err
    assert "MCP_REVOCATION_URL" in err
    assert target.read_text() == "keep\n"


@pytest.mark.slow
def test_revoke_sub_covers_iat_up_to_leeway_ahead_and_says_until_when(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "MCP_REVOCATION_URL": f"sqlite:///{tmp_path}/r.db", "MCP_TOKEN_LEEWAY": "20"}
    before = int(time.time())
    result = run_cli(["token", "revoke", "--sub", "s"], env)
    after = int(time.time())
    assert result.returncode == 0, result.stderr
    until = {
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + 20)) for t in range(before, after + 1)
    }
    line = result.stderr
    assert any(f"issued until {t} (now + MCP_TOKEN_LEEWAY)" in line for t in until), line
    store = SqliteStore(tmp_path / "r.db", max_ttl=86_400, leeway=20)
    assert store.load(after).subs["s"] in range(before + 20, after + 21)
    store.close()


@pytest.mark.slow
def test_revocation_seen_by_another_process_sqlite(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "MCP_REVOCATION_URL": f"sqlite:///{tmp_path}/revocations.db"}
    ok(["keys", "new"], env)
    token = mint(env)
    ok(["token", "verify", token], env)
    ok(["token", "revoke", token], env)
    assert refused(["token", "verify", token], env, 1).startswith("mcp-warden: revoked:")
    other = mint(env, "--sub", "erin")
    ok(["token", "revoke", "--sub", "erin"], env)
    assert refused(["token", "verify", other], env, 1).startswith("mcp-warden: revoked:")


@pytest.mark.slow
def test_retire_takes_a_kid_that_begins_with_a_dash(tmp_path: Path, env: dict[str, str]) -> None:
    """One kid in 64 begins with "-"; `keys retire KID` must not read it as options."""
    keydir = KeyDir(tmp_path / "keys")
    dashed = next(k for k in (keydir.new().kid for _ in range(2000)) if k.startswith("-"))
    keydir.new()  # `dashed` is no longer the active key, so it can be retired
    assert dashed in ok(["keys", "list"], env)
    result = run_cli(["keys", "retire", dashed, "--force"], env)
    assert result.returncode == 0, result.stderr
    assert dashed not in ok(["keys", "list"], env)
    assert dashed not in (tmp_path / "keys" / "jwks.json").read_text()
    # Options still parse around it, and a dashed value that is not a kid is still refused.
    assert run_cli(["keys", "retire", "--force", "-not-a-kid"], env).returncode == 2
