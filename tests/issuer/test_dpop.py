"""DPoP at the token endpoint (RFC 9449 section 5), in-process: bound tokens and refused proofs.

A token request with one valid proof gets `token_type: DPoP` and a token
whose `cnf.jkt` is the proof key's RFC 7638 thumbprint; a client registered
with `--require-dpop` gets nothing without one; every bad proof is
`invalid_dpop_proof` with an audit line that names the reason and never the
proof.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mcp_warden.config import DEFAULTS
from mcp_warden.issuer.clients import Client
from mcp_warden.tokens.dpop import public_jwk, sign_proof, thumbprint
from mcp_warden.tokens.issuer import MintError, check_jkt, mint
from mcp_warden.tokens.jws import b64url_encode
from mcp_warden.tokens.keys import KeyDir
from tests.issuer.test_service import GRANT, ISSUER, Lab, build, jwt_form, keyed, signed

TOKEN_URL = ISSUER + "/token"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from build(tmp_path)


def secret_client(lab: Lab, *, require_dpop: bool = False) -> tuple[Client, str]:
    client, secret = lab.add(["web_search", "usage"])
    if require_dpop:
        client = lab.issuer.registry.update(
            client.client_id, lambda c: replace(c, require_dpop=True)
        )
    return client, secret


def proof(key: Any, **kw: Any) -> str:
    """A proof for POST at the token endpoint, now (kw: sign_proof's overrides)."""
    args: dict[str, Any] = {"method": "POST", "url": TOKEN_URL, "now": time.time(), **kw}
    return str(sign_proof(key, **args))


def post(lab: Lab, auth: tuple[Client, str], *proofs: str, **form: str) -> Any:
    headers = [("DPoP", p) for p in proofs]
    raw = f"{auth[0].client_id}:{auth[1]}".encode()
    headers.append(("Authorization", "Basic " + base64.b64encode(raw).decode()))
    return lab.http.post("/token", data={**GRANT, **form}, headers=headers)


def claims_of(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


@pytest.mark.parametrize("kind", ["ES256", "EdDSA"])
def test_a_valid_proof_gets_a_token_bound_to_its_key(lab: Lab, kind: str) -> None:
    key: Any = ec.generate_private_key(ec.SECP256R1()) if kind == "ES256" else None
    key = key or Ed25519PrivateKey.generate()
    auth = secret_client(lab)
    reply = post(lab, auth, proof(key))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "DPoP"
    jkt = thumbprint(public_jwk(key))
    claims = claims_of(body["access_token"])
    assert claims["cnf"] == {"jkt": jkt}
    assert claims["sub"] == auth[0].client_id
    line = lab.audit()[-1]
    assert (line["outcome"], line["jti"]) == ("issued", claims["jti"])


def test_a_private_key_jwt_client_gets_a_bound_token_too(lab: Lab) -> None:
    private, alg, client = keyed(lab, "p256")
    key = Ed25519PrivateKey.generate()  # the DPoP key is not the client's assertion key
    reply = lab.http.post(
        "/token",
        data=jwt_form(signed(private, alg, client.client_id)),
        headers={"DPoP": proof(key)},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["token_type"] == "DPoP"
    assert claims_of(reply.json()["access_token"])["cnf"] == {"jkt": thumbprint(public_jwk(key))}


def test_without_a_proof_the_token_is_bearer_and_unbound(lab: Lab) -> None:
    reply = post(lab, secret_client(lab))
    assert reply.status_code == 200, reply.text
    assert reply.json()["token_type"] == "Bearer"
    assert "cnf" not in claims_of(reply.json()["access_token"])


def test_metadata_names_the_proof_algorithms(lab: Lab) -> None:
    doc = lab.http.get("/.well-known/oauth-authorization-server").json()
    assert doc["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]


def test_a_require_dpop_client_gets_no_unbound_token(lab: Lab) -> None:
    auth = secret_client(lab, require_dpop=True)
    reply = post(lab, auth)
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_dpop_proof"
    assert "DPoP" in reply.json()["error_description"]
    line = lab.audit()[-1]
    assert (line["outcome"], line["reason"], line["client_id"]) == (
        "refused",
        "dpop_required",
        auth[0].client_id,
    )
    key = Ed25519PrivateKey.generate()
    bound = post(lab, auth, proof(key))
    assert bound.status_code == 200, bound.text
    assert bound.json()["token_type"] == "DPoP"


def test_a_replayed_proof_is_refused(lab: Lab) -> None:
    auth = secret_client(lab)
    once = proof(Ed25519PrivateKey.generate())
    assert post(lab, auth, once).status_code == 200
    again = post(lab, auth, once)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_dpop_proof"
    assert once not in again.text
    assert lab.audit()[-1]["reason"] == "dpop_replayed"


def test_a_request_refused_for_its_grant_does_not_spend_the_proof(lab: Lab) -> None:
    auth = secret_client(lab)
    key = Ed25519PrivateKey.generate()
    one = proof(key)
    assert post(lab, auth, one, scope="not_granted").json()["error"] == "invalid_scope"
    assert post(lab, auth, one).status_code == 200


def test_the_proof_is_checked_only_after_client_authentication(lab: Lab) -> None:
    client, _ = secret_client(lab)
    reply = post(lab, (client, "wrong"), "not-a-proof")
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


def _private_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    d = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {**public_jwk(key), "d": b64url_encode(d)}


def _unsigned(alg: str) -> str:
    """A proof whose header names `alg` (none, HS256): refused before any key is used."""
    key = Ed25519PrivateKey.generate()
    signed = proof(key, header={"alg": alg})
    head, body, _ = signed.split(".")
    return f"{head}.{body}." if alg == "none" else signed


BAD: dict[str, tuple[Callable[[Ed25519PrivateKey], str], str]] = {
    "alg_none": (lambda k: _unsigned("none"), "dpop_unsupported_algorithm"),
    "alg_hs256": (lambda k: _unsigned("HS256"), "dpop_unsupported_algorithm"),
    "private_key_in_jwk": (lambda k: proof(k, header={"jwk": _private_jwk(k)}), "dpop_private_key"),
    "wrong_htm": (lambda k: proof(k, method="GET"), "dpop_wrong_method"),
    "wrong_htu": (lambda k: proof(k, url=ISSUER + "/revoke"), "dpop_wrong_url"),
    "other_host": (lambda k: proof(k, url="https://evil.test/token"), "dpop_wrong_url"),
    "stale_iat": (
        lambda k: proof(k, now=time.time() - DEFAULTS.dpop_max_age_seconds - 5),
        "dpop_iat_outside_window",
    ),
    "future_iat": (
        lambda k: proof(k, now=time.time() + DEFAULTS.dpop_future_seconds + 30),
        "dpop_iat_outside_window",
    ),
    "wrong_typ": (lambda k: proof(k, header={"typ": "JWT"}), "dpop_wrong_type"),
    "other_key_signed": (
        lambda k: proof(k, header={"jwk": public_jwk(Ed25519PrivateKey.generate())}),
        "dpop_bad_signature",
    ),
    "no_jti": (lambda k: proof(k, claims={"jti": None}), "dpop_invalid_claim"),
    "garbage": (lambda k: "not-a-compact-jws." * 3, "dpop_malformed"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_proof_is_invalid_dpop_proof_with_an_audit_line(lab: Lab, case: str) -> None:
    make, reason = BAD[case]
    bad = make(Ed25519PrivateKey.generate())
    auth = secret_client(lab)
    reply = post(lab, auth, bad)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_dpop_proof"
    assert reply.headers["Cache-Control"] == "no-store"
    line = lab.audit()[-1]
    assert (line["outcome"], line["reason"], line["error"]) == (
        "refused",
        reason,
        "invalid_dpop_proof",
    )
    text = reply.text + lab.audit_path.read_text()
    assert bad not in text
    assert bad.split(".")[0] not in text


def test_two_dpop_headers_are_refused(lab: Lab) -> None:
    key = Ed25519PrivateKey.generate()
    reply = post(lab, secret_client(lab), proof(key), proof(key))
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_dpop_proof"
    assert lab.audit()[-1]["reason"] == "dpop_multiple_proofs"


# -- the registry record and offline minting ------------------------------------------


def test_a_record_stored_before_dpop_reads_as_optional() -> None:
    new = Client("mcpw_x", "old", ("usage",), 60, 0, secret_hash="ab", require_dpop=True)
    assert Client.from_json(new.to_json()).require_dpop is True
    old = new.to_json().replace(',"require_dpop":true', "")
    assert "require_dpop" not in old
    assert Client.from_json(old).require_dpop is False
    with pytest.raises(ValueError, match="require_dpop"):
        Client.from_json(new.to_json().replace('"require_dpop":true', '"require_dpop":"yes"'))
    assert new.listing()["dpop"] == "required"


def test_mint_binds_to_a_thumbprint_and_checks_its_form(tmp_path: Path) -> None:
    KeyDir(tmp_path).new()
    jkt = thumbprint(public_jwk(Ed25519PrivateKey.generate()))
    token = mint(tmp_path, issuer="i", sub="s", tools=["usage"], ttl=60, audience="a", dpop_jkt=jkt)
    assert claims_of(token)["cnf"] == {"jkt": jkt}
    assert check_jkt(jkt) == jkt
    for bad in ("", jkt[:-1], jkt + "A", jkt[:-1] + "B", jkt[:-1] + "=", "+" + jkt[1:], " " * 43):
        with pytest.raises(MintError, match="thumbprint"):
            check_jkt(bad)
    with pytest.raises(MintError, match="cnf"):
        mint(
            tmp_path,
            issuer="i",
            sub="s",
            tools=["usage"],
            ttl=60,
            audience="a",
            dpop_jkt=jkt,
            extra_claims={"cnf": {"jkt": jkt}},
        )
