"""What a real `mcp-warden serve` prints and answers when things fail: a client never gets
the upstream's words, the API key or a server path; the server log gets the cause, masked;
no URL it prints carries a password or a query token.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcp_warden.demo.harness import call_http, free_port
from tests.support.credentials import new_master_key
from tests.support.server import Deployment, run
from tests.support.stub import key_runs

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "mcp_warden", "serve"]
SEARCH = {"query": "echo test"}
UNAVAILABLE = (
    "the upstream credential is not available on this server (no_credential); "
    "the server log has the cause"
)


def test_an_upstream_that_echoes_the_key_reaches_no_client_and_a_masked_log(
    lab: Deployment,
) -> None:
    token = lab.mint(["web_search"], sub="echo")
    with lab.serve() as server:
        for echo in ("exact", "upper", "partial", "split"):
            for status in (400, 401, 404):
                lab.stub.reset()
                lab.stub.mode(status=status, times=1, echo_key=echo)
                result = run(lambda: call_http(server.url, token, "web_search", SEARCH))
                assert result.is_error
                text = " ".join(getattr(part, "text", "") for part in result.content)
                assert f"(HTTP {status})" in text
                assert "key sent" not in text, text
                assert key_runs(text, lab.api_key) == [], (echo, status, text)
        output = server.output()
    logged = [line for line in output.splitlines() if "Scavio answered HTTP" in line]
    assert len(logged) == 12, output
    assert all("(key sent: " in line and "[redacted]" in line for line in logged)
    assert key_runs(output, lab.api_key) == []


@pytest.mark.parametrize("cause", ["not_stored", "wrong_master_key"])
def test_a_credential_failure_shows_no_server_path_and_the_log_has_it(
    lab: Deployment, cause: str
) -> None:
    env = (
        {"MCP_SCAVIO_CREDENTIAL": "never_stored"}
        if cause == "not_stored"
        else {"MCP_ENCRYPTION_KEY": new_master_key()}
    )
    token = lab.mint(["usage"], sub=f"credential-{cause}")
    lab.stub.reset()
    with lab.serve(env=env) as server:
        result = run(lambda: call_http(server.url, token, "usage", {}))
        output = server.output()
    assert result.is_error
    text = " ".join(getattr(part, "text", "") for part in result.content)
    assert text == f"Error executing tool usage: {UNAVAILABLE}"
    assert str(lab.root) not in text
    assert "mcp_credentials.enc" not in text
    assert f"{lab.root / 'mcp_credentials.enc'}" in output  # the operator's log names the file
    assert "could not be loaded" in output
    assert lab.stub.calls() == 0


def test_urls_with_a_password_or_query_token_are_printed_without_them(
    lab: Deployment,
) -> None:
    """Start-up errors and warnings of real serve processes (run together: one import each)."""
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: the fetch fails
    cases = {
        "jwks": {"MCP_JWKS": f"https://jwksuser:jwks-Pa55word@{dead}/jwks.json?token=JwksT0ken"},
        "scavio_query": {"SCAVIO_BASE_URL": f"https://{dead}/v2?api_key=Scav10T0ken#Frag9"},
        "scavio_userinfo": {"SCAVIO_BASE_URL": f"https://scavuser:Scav10Pw@{dead}/v2"},
    }
    procs = {
        name: subprocess.Popen(
            [*SERVE, "--port", "0"],
            env={**lab.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in cases.items()
    }
    outputs: dict[str, str] = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, (name, stderr)
        outputs[name] = stdout + stderr
    # a server that starts, and warns that its audience names another address
    audience = {"MCP_TOKEN_AUDIENCE": f"https://{dead}/mcp?aud_token=Aud1enceT0ken"}
    with lab.serve(env=audience) as server:
        outputs["audience"] = server.output()
    secrets = ("jwksuser", "Pa55word", "JwksT0ken", "Scav10T0ken", "Frag9", "scavuser", "Scav10Pw")
    for name, output in outputs.items():
        for secret in (*secrets, "Aud1enceT0ken"):
            assert secret not in output, (name, output)
    assert f"cannot fetch a JWKS from https://{dead}/jwks.json;" in outputs["jwks"]
    assert f"JWKS https://{dead}/jwks.json not fetched" in outputs["jwks"]
    assert (
        "SCAVIO_BASE_URL must not contain a query or fragment (the key goes in a header); "
        f"use https://{dead}/v2" in outputs["scavio_query"]
    )
    assert "SCAVIO_BASE_URL must not contain a user name or password" in outputs["scavio_userinfo"]
    assert f"MCP_TOKEN_AUDIENCE is https://{dead}/mcp but" in outputs["audience"]
