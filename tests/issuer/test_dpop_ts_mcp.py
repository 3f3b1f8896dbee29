"""The TypeScript SDK 2.x client with its own DPoP, end to end (real processes).

`issuer serve` (TLS, the test CA trusted through NODE_EXTRA_CA_CERTS),
`mcp-warden serve` (MCP_TOKEN_ISSUER = the issuer, MCP_JWKS = its jwks_uri,
MCP_REQUIRE_DPOP=1: no unbound token is accepted), the stub upstream. The
client (`ClientCredentialsProvider` whose `dpop()` returns a `DpopSession`,
registered `--require-dpop`) starts with no token: the server's 401 leads it
to the issuer, it gets a DPoP-bound token with a proof in its token request,
then calls `web_search` with `Authorization: DPoP` and a fresh proof on
every MCP request; the stub sees the search.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from mcp_warden.demo.harness import cli_env
from tests.issuer.lab import issuer_lab, no_secret_in
from tests.support.procs import run_node
from tests.support.server import audit_lines, deployment

pytestmark = pytest.mark.slow  # real issuer, serve, stub and Node processes


@pytest.mark.parametrize("alg", [None, "EdDSA"])  # None: the SDK's default, ES256
def test_the_ts_2x_client_calls_web_search_with_a_dpop_bound_token(
    tmp_path: Path, alg: str | None
) -> None:
    (tmp_path / "server").mkdir()
    with (
        issuer_lab(tmp_path / "issuer") as lab,
        deployment(
            tmp_path / "server",
            MCP_TOKEN_ISSUER=lab.issuer_url,
            MCP_JWKS=lab.issuer_url + "/jwks.json",
            MCP_REQUIRE_DPOP="1",
            SSL_CERT_FILE=str(lab.pki.ca_file),
        ) as server,
    ):
        lab.env["MCP_TOKEN_AUDIENCE"] = server.audience
        lab.env["MCP_REVOCATION_URL"] = server.env["MCP_REVOCATION_URL"]
        client = lab.add_client("ts-dpop", ["web_search"], require_dpop=True)
        assert client.secret is not None
        plan: dict[str, Any] = {
            "issuer": lab.issuer_url,
            "clientId": client.client_id,
            "mcpUrl": server.audience,
            "calls": [{"name": "web_search", "arguments": {"query": "warden"}}],
        }
        if alg is not None:
            plan["alg"] = alg
        env = cli_env(
            {"NODE_EXTRA_CA_CERTS": str(lab.pki.ca_file), "MCP_CLIENT_SECRET": client.secret}
        )
        with lab.issuer() as issuer, server.serve():
            done = run_node("dpop_client.mjs", env=env, input=json.dumps(plan))
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout.strip().splitlines()[-1])
            assert "error" not in out, out
            assert out["tokenType"] == "DPoP"
            [call] = out["calls"]
            assert call.get("isError") is False, call
            assert server.stub.calls() == 1
            assert out["dpopHeaders"] >= 3  # the token request and every MCP request
            issued = [line for line in issuer.audit() if line["outcome"] == "issued"]
            assert [line["client_id"] for line in issued] == [client.client_id]
            mine = [
                line
                for line in audit_lines(server.audit_log)
                if line.get("sub") == client.client_id and line.get("tool")
            ]
            assert [(line["tool"], line["outcome"]) for line in mine] == [("web_search", "allowed")]
            # The same token without the key: refused, and the stub sees nothing more.
            token = out["accessToken"]
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["cnf"] == {"jkt": out["jkt"]}
            call_body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "web_search", "arguments": {"query": "x"}},
            }
            headers = {"Accept": "application/json, text/event-stream"}
            for scheme in ("Bearer", "DPoP"):
                stolen = httpx.post(
                    server.audience,
                    json=call_body,
                    headers={**headers, "Authorization": f"{scheme} {token}"},
                    timeout=10,
                )
                assert stolen.status_code == 401, (scheme, stolen.text)
                assert token not in stolen.text
            assert server.stub.calls() == 1
            assert no_secret_in(
                server.audit_log.read_text() + issuer.audit_log.read_text(), client.secret
            )
