"""`mcp-warden clients ...` (real processes): a secret printed once, never kept nor listed."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from mcp_warden.demo.harness import cli_env, run_cli
from mcp_warden.issuer.clients import hash_secret
from mcp_warden.tokens.jwks import public_jwk

pytestmark = pytest.mark.slow  # real issuer / serve / CLI processes


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(MCP_CLIENTS_URL=f"sqlite:///{tmp_path / 'clients.db'}")


def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = run_cli(args, env)
    return done.returncode, done.stdout, done.stderr


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mcp-warden: ")
    return lines[0]


def test_add_prints_the_secret_once_and_keeps_only_its_hash(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = cli(env, "clients", "add", "crawler", "--tools", "web_search,extract_url")
    assert code == 0, err
    printed = json.loads(out)
    assert set(printed) == {"client_id", "client_secret"}
    secret = printed["client_secret"]
    assert secret not in err
    db = tmp_path / "clients.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("clients.db*"))
    assert secret.encode() not in stored
    assert hash_secret(secret).encode() in stored

    code, out, err = cli(env, "clients", "list")
    assert code == 0, err
    assert printed["client_id"] in out
    assert "crawler" in out
    assert "extract_url,web_search" in out
    assert secret not in out + err
    assert hash_secret(secret) not in out + err
    code, out, _ = cli(env, "clients", "list", "--json")
    listed = json.loads(out)
    assert listed[0]["tools"] == ["extract_url", "web_search"]
    assert "secret" not in json.dumps(listed).replace("client_secret_basic", "").replace(
        "client_secret_post", ""
    )


def test_set_rotate_remove(env: dict[str, str], tmp_path: Path) -> None:
    _, out, _ = cli(env, "clients", "add", "svc", "--tools", "web_search", "--ttl", "120")
    first = json.loads(out)
    cid = first["client_id"]
    code, _, err = cli(env, "clients", "set", cid, "--tools", "usage", "--ttl", "60")
    assert code == 0, err
    listed = json.loads(cli(env, "clients", "list", "--json")[1])[0]
    assert (listed["tools"], listed["ttl"]) == (["usage"], 60)

    code, out, err = cli(env, "clients", "rotate-secret", cid)
    assert code == 0, err
    rotated = json.loads(out)
    assert rotated["client_id"] == cid
    assert rotated["client_secret"] != first["client_secret"]
    with sqlite3.connect(tmp_path / "clients.db") as db:
        doc = json.loads(db.execute("SELECT doc FROM clients").fetchone()[0])
    assert doc["secret_hash"] == hash_secret(rotated["client_secret"])

    code, out, err = cli(env, "clients", "remove", cid)
    assert code == 0, err
    assert f"token revoke --sub {cid}" in err  # says how to end the tokens it holds
    assert json.loads(cli(env, "clients", "list", "--json")[1]) == []
    code, _, err = cli(env, "clients", "remove", cid)
    assert code == 2
    assert "clients list" in one_error_line(err)


def jwk_file(tmp_path: Path, jwk: Mapping[str, object]) -> str:
    path = tmp_path / "client.jwk"
    path.write_text(json.dumps(jwk), encoding="utf-8")
    return str(path)


def test_add_with_a_public_jwk_makes_a_private_key_jwt_client(
    env: dict[str, str], tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    path = jwk_file(tmp_path, public_jwk(key.public_key()))
    code, out, err = cli(env, "clients", "add", "keyed", "--tools", "web_search", "--jwk", path)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in printed
    assert "private_key_jwt EdDSA" in cli(env, "clients", "list")[1]
    code, _, err = cli(env, "clients", "rotate-secret", printed["client_id"])
    assert code == 2
    assert "clients set ID --jwk" in one_error_line(err)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = jwk_file(tmp_path, json.loads(ECAlgorithm.to_jwk(other)))
    code, _, err = cli(env, "clients", "set", printed["client_id"], "--jwk", path)
    assert code == 0, err
    assert "private_key_jwt ES256" in cli(env, "clients", "list")[1]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: json.loads(OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate())), "private key"),
        (
            lambda: json.loads(
                RSAAlgorithm.to_jwk(
                    rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505
                )
            ),
            "at least 2048",
        ),
        (lambda: {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}, "private key"),
        (lambda: {"keys": []}, "not a JWK"),
    ],
)
def test_bad_jwks_are_refused_in_one_line(
    env: dict[str, str], tmp_path: Path, make: object, says: str
) -> None:
    path = jwk_file(tmp_path, make())  # type: ignore[operator]
    code, out, err = cli(env, "clients", "add", "keyed", "--tools", "web_search", "--jwk", path)
    assert code == 2
    assert out == ""
    assert says in one_error_line(err)
    assert json.loads(cli(env, "clients", "list", "--json")[1]) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["clients", "add", "bad name", "--tools", "a"], "client name"),
        (["clients", "add", "svc", "--tools", "a*"], "invalid tool name"),
        (["clients", "add", "svc", "--tools", "a", "--ttl", "999999"], "MCP_TOKEN_MAX_TTL"),
        (["clients", "set", "mcpw_0", "--tools", "a"], "no client"),
    ],
)
def test_usage_errors(env: dict[str, str], args: list[str], says: str) -> None:
    code, out, err = cli(env, *args)
    assert code == 2
    assert out == ""
    assert says in one_error_line(err)


def test_a_linked_registry_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "elsewhere.db").touch()
    (tmp_path / "linked.db").symlink_to(tmp_path / "elsewhere.db")
    env = {**env, "MCP_CLIENTS_URL": f"sqlite:///{tmp_path / 'linked.db'}"}
    code, out, err = cli(env, "clients", "add", "svc", "--tools", "web_search")
    assert code == 2
    assert out == ""
    assert "symbolic link" in one_error_line(err)
    assert (tmp_path / "elsewhere.db").stat().st_size == 0
