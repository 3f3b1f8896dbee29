"""DPoP proofs across implementations: npm jose's verify in ours, ours verify in jose."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.tokens.dpop import (
    DpopError,
    PrivateKey,
    public_jwk,
    sign_proof,
    thumbprint,
    verify_proof,
)
from tests.support.procs import run_node

pytestmark = pytest.mark.slow

URL = "https://mcp.example.test/mcp"
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_jose_proofs_verify_in_ours(alg: str) -> None:
    made = run_node("dpop.mjs", ["make", alg, "POST", URL, TOKEN])
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    proof = verify_proof(out["proof"], method="POST", url=URL, access_token=TOKEN, now=time.time())
    assert proof.jkt == out["jkt"]
    with pytest.raises(DpopError, match="htm"):
        verify_proof(out["proof"], method="GET", url=URL, access_token=TOKEN, now=time.time())


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_our_proofs_verify_in_jose(alg: str) -> None:
    key: PrivateKey = (
        Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
    )
    proof = sign_proof(key, method="POST", url=URL, now=time.time(), access_token=TOKEN)
    checked = run_node("dpop.mjs", ["verify", "POST", URL, TOKEN], input=proof)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = json.loads(checked.stdout)
    assert out["jkt"] == thumbprint(public_jwk(key))
    assert out["payload"]["htm"] == "POST"
    wrong = run_node("dpop.mjs", ["verify", "POST", URL, "other.token.x"], input=proof)
    assert (wrong.returncode, json.loads(wrong.stdout)) == (1, {"error": "ath"})
    old = sign_proof(key, method="POST", url=URL, now=time.time() - 300, access_token=TOKEN)
    stale = run_node("dpop.mjs", ["verify", "POST", URL, TOKEN], input=old)
    assert stale.returncode == 1
