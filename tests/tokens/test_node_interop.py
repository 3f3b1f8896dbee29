"""Tokens minted by `mcp-warden token mint` verify in real Node with npm jose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_warden.demo.harness import cli_env, run_cli
from tests.support.procs import node_bin, run_node

pytestmark = pytest.mark.slow

AUDIENCE = "https://mcp.example/mcp"


def node_verify(jwks: Path, token: str) -> tuple[int, dict[str, object]]:
    result = run_node("jwt_verify.mjs", [str(jwks), "mcp-warden", AUDIENCE], input=token)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    node_bin()  # skip early (fail in CI) without Node
    return cli_env(
        MCP_KEYS_DIR=str(tmp_path / "keys"),
        MCP_TOKEN_AUDIENCE=AUDIENCE,
        MCP_REVOCATION_URL="memory://",
    )


def cli(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_jose_verifies_our_token_with_the_same_claims(env: dict[str, str], tmp_path: Path) -> None:
    kid = cli(["keys", "new"], env)
    token = cli(
        ["token", "mint", "--tools", "web_search,news", "--ttl", "300", "--sub", "svc-1"], env
    )
    ours = json.loads(cli(["token", "verify", token], env))
    code, theirs = node_verify(tmp_path / "keys" / "jwks.json", token)
    assert code == 0, theirs
    assert theirs["protectedHeader"] == {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
    assert theirs["payload"] == {k: v for k, v in ours.items() if k != "kid"}


def test_jose_refuses_what_we_refuse(env: dict[str, str], tmp_path: Path) -> None:
    """Tampering and key retirement: Node and the CLI agree the token is bad."""
    jwks = tmp_path / "keys" / "jwks.json"
    old = cli(["keys", "new"], env)
    token = cli(["token", "mint", "--tools", "a", "--ttl", "300", "--sub", "svc-2"], env)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert node_verify(jwks, tampered) == (1, {"error": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"})
    cli(["keys", "new"], env)
    assert node_verify(jwks, token)[0] == 0  # old key still published
    cli(["keys", "retire", old, "--force"], env)
    assert node_verify(jwks, token) == (1, {"error": "ERR_JWKS_NO_MATCHING_KEY"})
    assert run_cli(["token", "verify", token], env).stderr.startswith("mcp-warden: unknown_key:")
