"""The official TypeScript SDK 2.x client (@modelcontextprotocol/client 2.4.0) with its own DPoP.

Its `ClientCredentialsProvider`, given a `dpop()` that returns a
`DpopSession`, signs a proof into its token request at a real `issuer serve`
process (over TLS, the test CA trusted through NODE_EXTRA_CA_CERTS); the
issuer answers `token_type: DPoP` with `cnf.jkt` = the session key's
thumbprint, for the SDK's default ES256 and for EdDSA, and for a client
registered `--require-dpop`. tests/replicas/test_dpop_ts_mcp.py goes on
through two `serve` replicas to `web_search`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from mcp_warden.demo.harness import cli_env
from tests.issuer.lab import issuer_lab, no_secret_in
from tests.support.procs import run_node

pytestmark = pytest.mark.slow  # real issuer and Node processes


@pytest.mark.parametrize("alg", [None, "EdDSA"])  # None: the SDK's default, ES256
def test_the_ts_2x_client_gets_a_token_bound_to_its_dpop_key(
    tmp_path: Path, alg: str | None
) -> None:
    with issuer_lab(tmp_path) as lab:
        client = lab.add_client("ts", ["web_search"], require_dpop=True)
        assert client.secret is not None
        plan: dict[str, Any] = {
            "issuer": lab.issuer_url,
            "clientId": client.client_id,
            "resource": lab.env["MCP_TOKEN_AUDIENCE"],
        }
        if alg is not None:
            plan["alg"] = alg
        env = cli_env(
            {"NODE_EXTRA_CA_CERTS": str(lab.pki.ca_file), "MCP_CLIENT_SECRET": client.secret}
        )
        with lab.issuer() as running:
            done = run_node("dpop_client.mjs", env=env, input=json.dumps(plan))
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout.strip().splitlines()[-1])
            assert "error" not in out, out
            assert out["tokenType"] == "DPoP"
            assert out["alg"] == (alg or "ES256")
            assert out["dpopHeaders"] == 1
            claims = jwt.decode(out["accessToken"], options={"verify_signature": False})
            assert claims["cnf"] == {"jkt": out["jkt"]}
            assert claims["aud"] == lab.env["MCP_TOKEN_AUDIENCE"]
            header = jwt.get_unverified_header(out["accessToken"])
            assert header["typ"] == "at+jwt"
            line = running.audit()[-1]
            assert (line["outcome"], line["client_id"]) == ("issued", client.client_id)
            assert no_secret_in(running.output(), client.secret, out["accessToken"])
