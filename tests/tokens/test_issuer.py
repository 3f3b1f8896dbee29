"""Minting: the exact header and claims, tool-name rules, TTL bounds, jti entropy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jwt
import pytest
from mcp.shared.tool_name_validation import TOOL_NAME_REGEX

from mcp_warden.tokens.issuer import MintError, mint, normalize_tools
from mcp_warden.tokens.jws import b64url_decode
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.toolnames import TOOL_NAME, is_tool_name
from tests.support.clock import NOW, FakeClock
from tests.support.tokens import AUDIENCE, ISSUER


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    KeyDir(tmp_path / "keys", clock=FakeClock().time).new()
    return tmp_path / "keys"


def mint_now(keys_dir: Path, **kwargs: object) -> str:
    args: dict[str, object] = {
        "issuer": ISSUER,
        "sub": "alice",
        "tools": ["web_search"],
        "ttl": 600,
        "audience": AUDIENCE,
        "clock": FakeClock().time,
    }
    args.update(kwargs)
    return mint(keys_dir, **args)  # type: ignore[arg-type]


def parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def test_header_and_claims(keys_dir: Path) -> None:
    token = mint_now(keys_dir, tools=["b", "a", "b"])
    header, claims = parts(token)
    kid = KeyDir(keys_dir).signing_key()[0]
    assert header == {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
    jti = claims.pop("jti")
    assert claims == {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 600,
        "tools": ["a", "b"],
    }
    assert isinstance(jti, str)
    assert len(b64url_decode(jti)) == 16


def test_jti_is_fresh_each_time(keys_dir: Path) -> None:
    jtis = {parts(mint_now(keys_dir))[1]["jti"] for _ in range(50)}
    assert len(jtis) == 50


def test_pyjwt_verifies_it(keys_dir: Path) -> None:
    _, key = KeyDir(keys_dir).signing_key()
    token = mint(
        keys_dir, issuer=ISSUER, sub="s", tools=["t"], ttl=60, audience=AUDIENCE
    )  # real clock
    decoded = jwt.decode(
        token, key.public_key(), algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER
    )
    assert decoded["tools"] == ["t"]


@pytest.mark.parametrize("ttl", [0, -1, 86_401, 10**9])
def test_ttl_bounds(keys_dir: Path, ttl: int) -> None:
    with pytest.raises(MintError, match="ttl"):
        mint_now(keys_dir, ttl=ttl)


def test_ttl_bound_follows_max_ttl(keys_dir: Path) -> None:
    assert mint_now(keys_dir, ttl=86_400)
    with pytest.raises(MintError, match="1 to 60"):
        mint_now(keys_dir, ttl=61, max_ttl=60)


@pytest.mark.parametrize(
    "tools", [["*"], ["web_*"], ["a b"], ["a/b"], [""], ["x" * 129], ["é"], [], ["ok", "a,b"]]
)
def test_invalid_tools(keys_dir: Path, tools: list[str]) -> None:
    with pytest.raises(MintError):
        mint_now(keys_dir, tools=tools)


@pytest.mark.parametrize("sub", ["", "x" * 257, "a\nb", "a\x00"])
def test_invalid_sub(keys_dir: Path, sub: str) -> None:
    with pytest.raises(MintError, match="sub"):
        mint_now(keys_dir, sub=sub)


def test_needs_a_key(tmp_path: Path) -> None:
    from mcp_warden.errors import ConfigError

    with pytest.raises(ConfigError, match="keys new"):
        mint_now(tmp_path / "empty")


def test_tool_names_follow_the_mcp_spec_rule() -> None:
    names = ["getUser", "DATA_EXPORT_v2", "admin.tools.list", "a-b", "x" * 128]
    assert all(is_tool_name(n) for n in names)
    assert normalize_tools(["b", "a", "a"]) == ["a", "b"]
    # the same rule as the MCP SDK's validator, on a spread of inputs
    samples = [*names, "x" * 129, "", "a b", "a/b", "*", "é", "a\n", "ok.", "-"]
    for s in samples:
        assert bool(TOOL_NAME.fullmatch(s)) == bool(TOOL_NAME_REGEX.fullmatch(s)), s
    assert TOOL_NAME.pattern == re.sub(r"[\^$]", "", TOOL_NAME_REGEX.pattern).replace("._-", "_.-")
