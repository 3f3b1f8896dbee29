"""Tokens whose header or claims are JSON nested deeper than the parser takes (issue 8, item 4).

About a thousand nested arrays fit in a token under its 8 KiB limit. Such a
token is malformed: 401 `malformed` from a real `serve`, exit 1 `malformed`
from `token verify`, and a stdio server given it as MCP_TOKEN refuses to
start (exit 2, one line). Never a 500 or a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcp_warden.demo.harness import post, tools_call
from mcp_warden.tokens.jws import MAX_TOKEN_CHARS, b64url_encode
from mcp_warden.tokens.keys import KeyDir
from tests.support.server import Deployment, Served
from tests.support.tokens import forge

pytestmark = pytest.mark.slow

DEPTH = 1000
SIGNATURE = "A" * 86  # never looked at: the header is refused first


def nested(kind: str) -> str:
    """JSON nested DEPTH levels deep."""
    if kind == "arrays":
        return "[" * DEPTH + "]" * DEPTH
    return '{"a":' * DEPTH + "1" + "}" * DEPTH


def nested_header_token(kind: str) -> str:
    token = f"{b64url_encode(nested(kind).encode())}.e30.{SIGNATURE}"
    assert len(token) <= MAX_TOKEN_CHARS  # it passes the size check, so the parser sees it
    return token


def nested_claims_token(lab: Deployment) -> str:
    """A correctly signed token (the issuer's key) whose claims nest DEPTH arrays."""
    kid, key = KeyDir(lab.root / "keys").signing_key()
    header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
    return forge(key, header, '{"sub":"alice","tools":' + nested("arrays") + "}")


@pytest.mark.parametrize("kind", ["arrays", "objects"])
def test_deeply_nested_token_header_is_401_malformed_without_a_traceback(
    lab: Deployment, server: Served, kind: str
) -> None:
    token = nested_header_token(kind)
    response = post(server.url, tools_call("web_search", {"query": "q"}), token)
    assert response.status_code == 401, response.text
    assert (
        'error="invalid_token", error_description="malformed: '
        in (response.headers["www-authenticate"])
    )
    assert response.json()["error_description"].startswith("malformed: ")
    assert "Traceback" not in server.output()
    assert lab.stub.calls() == 0


def test_deeply_nested_signed_claims_are_401_malformed_without_a_traceback(
    lab: Deployment, server: Served
) -> None:
    response = post(server.url, tools_call("web_search", {"query": "q"}), nested_claims_token(lab))
    assert response.status_code == 401, response.text
    assert response.json()["error_description"].startswith("malformed: ")
    assert "Traceback" not in server.output()


def test_token_verify_calls_a_deeply_nested_token_malformed(lab: Deployment) -> None:
    for token in (nested_header_token("arrays"), nested_claims_token(lab)):
        done = lab.cli("token", "verify", token)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("mcp-warden: malformed: ")
        assert done.stdout == ""


def test_stdio_refuses_to_start_under_a_deeply_nested_token(lab: Deployment) -> None:
    argv = [sys.executable, "-m", "mcp_warden", "serve", "--transport", "stdio"]
    tokens = [nested_header_token("arrays"), nested_claims_token(lab)]
    procs = [  # together: each pays the SDK import once, in parallel
        subprocess.Popen(
            argv,
            env={**lab.env, "MCP_TOKEN": token},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for token in tokens
    ]
    for token, proc in zip(tokens, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, stderr
        assert stdout == ""
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("mcp-warden: MCP_TOKEN was refused (malformed: ")
        assert token not in stderr
