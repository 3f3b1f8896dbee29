"""DPoP through real `issuer serve` processes on one registry, and the `clients`/`token` commands.

A `--require-dpop` client gets no token without a proof and a bound one with
it; a proof used at one issuer process is refused at the other (the replay
cache lives in the shared registry); `clients set --allow-bearer` lifts the
requirement at once; `token mint --dpop-jkt` binds offline and checks the
thumbprint's form.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.tokens.dpop import public_jwk, sign_proof, thumbprint
from tests.issuer.lab import IssuerLab, issuer_lab, no_secret_in

pytestmark = pytest.mark.slow  # real issuer / CLI processes

GRANT = {"grant_type": "client_credentials"}


def claims_of(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_require_dpop_client_across_two_issuer_processes(
    request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    env = {}
    if store == "redis":
        env["MCP_CLIENTS_URL"] = request.getfixturevalue("redis_server").url
    with issuer_lab(tmp_path, **env) as lab:
        client = lab.add_client("bound", ["web_search"], require_dpop=True)
        listed = json.loads(lab.cli("clients", "list", "--json").stdout)
        assert listed[0]["dpop"] == "required"
        assert "required" in lab.cli("clients", "list").stdout
        token_url = lab.issuer_url + "/token"
        key = ec.generate_private_key(ec.SECP256R1())
        with lab.issuer() as one, lab.issuer() as two:
            meta = one.http.get(one.url + "/.well-known/oauth-authorization-server").json()
            assert meta["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]
            assert meta["token_endpoint"] == token_url

            refused = one.post_token(GRANT, auth=client.basic)
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_dpop_proof"
            assert one.audit()[-1]["reason"] == "dpop_required"

            proof = sign_proof(key, method="POST", url=token_url, now=time.time())
            bound = one.post_token(GRANT, auth=client.basic, headers={"DPoP": proof})
            assert bound.status_code == 200, bound.text
            assert bound.json()["token_type"] == "DPoP"
            token = bound.json()["access_token"]
            assert claims_of(token)["cnf"] == {"jkt": thumbprint(public_jwk(key))}

            replay = two.post_token(GRANT, auth=client.basic, headers={"DPoP": proof})
            assert replay.status_code == 400
            assert replay.json()["error"] == "invalid_dpop_proof"
            assert two.audit()[-1]["reason"] == "dpop_replayed"
            stale = sign_proof(key, method="POST", url=token_url, now=time.time() - 3600)
            old = two.post_token(GRANT, auth=client.basic, headers={"DPoP": stale})
            assert old.status_code == 400
            assert two.audit()[-1]["reason"] == "dpop_iat_outside_window"
            for issuer in (one, two):
                text = issuer.output() + issuer.audit_log.read_text()
                assert no_secret_in(text, client.secret, proof, stale, token)

            done = lab.cli("clients", "set", client.client_id, "--allow-bearer")
            assert done.returncode == 0, done.stderr
            plain = two.post_token(GRANT, auth=client.basic)
            assert plain.status_code == 200, plain.text
            assert plain.json()["token_type"] == "Bearer"
            assert "cnf" not in claims_of(plain.json()["access_token"])
            done = lab.cli("clients", "set", client.client_id, "--require-dpop")
            assert done.returncode == 0, done.stderr
            assert json.loads(lab.cli("clients", "list", "--json").stdout)[0]["dpop"] == "required"
            assert one.post_token(GRANT, auth=client.basic).status_code == 400


def _mint(lab: IssuerLab, *extra: str) -> Any:
    return lab.cli("token", "mint", "--sub", "ops", "--tools", "web_search", "--ttl", "60", *extra)


def test_token_mint_dpop_jkt(tmp_path: Path) -> None:
    with issuer_lab(tmp_path) as lab:
        jkt = thumbprint(public_jwk(Ed25519PrivateKey.generate()))
        done = _mint(lab, "--dpop-jkt", jkt)
        assert done.returncode == 0, done.stderr
        assert claims_of(done.stdout.strip())["cnf"] == {"jkt": jkt}
        plain = _mint(lab)
        assert "cnf" not in claims_of(plain.stdout.strip())
        for bad in (jkt[:-1], jkt + "x", "sha256:" + jkt, jkt.replace(jkt[5], "/")):
            done = _mint(lab, "--dpop-jkt", bad)
            assert done.returncode == 2, (bad, done.stdout)
            assert done.stdout == ""
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, done.stderr
            assert "thumbprint" in lines[0]
