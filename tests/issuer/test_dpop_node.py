"""DPoP across implementations (issue 11, Done when): Node `jose` and ours, both ways.

Proofs made by jose (EdDSA and ES256, fresh keys) pass our `verify_proof`
with jose's RFC 7638 thumbprint, and get a token bound to that thumbprint
from the issuer's token endpoint. Proofs made by ours (`sign_proof`) pass
jose's `jwtVerify` with `EmbeddedJWK` plus the RFC 9449 section 4.3 claim
checks, with our thumbprint; ours refused for a reason is refused by jose too.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.config import DEFAULTS
from mcp_warden.tokens.dpop import DpopError, public_jwk, sign_proof, thumbprint, verify_proof
from tests.issuer.test_service import GRANT, ISSUER, Lab, build
from tests.support.procs import run_node

pytestmark = pytest.mark.slow  # real Node

MCP_URL = "https://mcp.example.com/mcp"
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln"  # any access token: only its hash matters
WINDOW = (DEFAULTS.dpop_max_age_seconds, DEFAULTS.dpop_future_seconds)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from build(tmp_path)


def node(mode: str, plan: dict[str, Any]) -> dict[str, Any]:
    done = run_node("dpop_interop.mjs", [mode], input=json.dumps(plan))
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_proofs_made_by_jose_verify_in_ours_and_bind_a_token(lab: Lab) -> None:
    specs = [
        {"alg": "EdDSA", "htm": "POST", "htu": MCP_URL, "accessToken": TOKEN},
        {"alg": "ES256", "htm": "POST", "htu": MCP_URL, "accessToken": TOKEN},
        {"alg": "EdDSA", "htm": "POST", "htu": ISSUER + "/token"},
        {"alg": "ES256", "htm": "POST", "htu": ISSUER + "/token"},
    ]
    made = node("make", {"proofs": specs})["proofs"]
    now = time.time()
    for spec, out in zip(specs[:2], made[:2], strict=True):
        proof = verify_proof(
            out["proof"], method="POST", url=MCP_URL, access_token=TOKEN, now=now, window=WINDOW
        )
        assert proof.jkt == out["jkt"], spec["alg"]
        with pytest.raises(DpopError) as refused:
            verify_proof(
                out["proof"], method="GET", url=MCP_URL, access_token=TOKEN, now=now, window=WINDOW
            )
        assert refused.value.reason == "wrong_method"
    client, secret = lab.add(["web_search"])
    lab.issuer.registry.update(client.client_id, lambda c: replace(c, require_dpop=True))
    basic = "Basic " + base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
    for out in made[2:]:
        reply = lab.http.post(
            "/token", data=GRANT, headers={"Authorization": basic, "DPoP": out["proof"]}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["token_type"] == "DPoP"
        claims = jwt.decode(reply.json()["access_token"], options={"verify_signature": False})
        assert claims["cnf"] == {"jkt": out["jkt"]}


def test_proofs_made_by_ours_verify_with_jose() -> None:
    now = time.time()
    ed, p256 = Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    good = [
        sign_proof(ed, method="POST", url=MCP_URL, now=now, access_token=TOKEN),
        sign_proof(p256, method="POST", url=MCP_URL + "?x=1", now=now, access_token=TOKEN),
        sign_proof(p256, method="POST", url=ISSUER + "/token", now=now),
    ]
    urls = [MCP_URL, MCP_URL, ISSUER + "/token"]
    tokens: list[str | None] = [TOKEN, TOKEN, None]
    plan_proofs: list[dict[str, Any]] = []
    for proof, url, token in zip(good, urls, tokens, strict=True):
        spec: dict[str, Any] = {"proof": proof, "htm": "POST", "htu": url}
        if token is not None:
            spec["accessToken"] = token
        plan_proofs.append(spec)
    bad = [
        # ours refuses each of these; jose plus the RFC 9449 checks must too
        {"proof": good[0], "htm": "GET", "htu": MCP_URL, "accessToken": TOKEN},
        {"proof": good[0], "htm": "POST", "htu": MCP_URL, "accessToken": TOKEN + "x"},
        {"proof": good[0], "htm": "POST", "htu": "https://other.example.com/mcp"},
        {"proof": good[0][:-4] + "AAAA", "htm": "POST", "htu": MCP_URL},
        {
            "proof": sign_proof(ed, method="POST", url=MCP_URL, now=now - 600),
            "htm": "POST",
            "htu": MCP_URL,
        },
        {
            "proof": sign_proof(ed, method="POST", url=MCP_URL, now=now, header={"typ": "JWT"}),
            "htm": "POST",
            "htu": MCP_URL,
        },
    ]
    results = node("verify", {"now": now, "window": list(WINDOW), "proofs": plan_proofs + bad})
    got = results["results"]
    assert got[: len(good)] == [
        {"jkt": thumbprint(public_jwk(ed))},
        {"jkt": thumbprint(public_jwk(p256))},
        {"jkt": thumbprint(public_jwk(p256))},
    ]
    assert all("error" in r for r in got[len(good) :]), got
    for spec in bad:
        with pytest.raises(DpopError):
            verify_proof(
                spec["proof"],
                method=spec["htm"],
                url=spec["htu"],
                access_token=spec.get("accessToken"),
                now=now,
                window=WINDOW,
            )
