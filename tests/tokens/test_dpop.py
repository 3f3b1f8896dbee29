"""DPoP proof verification (RFC 9449 section 4.3): every check, each refused on its own."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.tokens.dpop import (
    REASONS,
    DpopError,
    PrivateKey,
    access_token_hash,
    normalize_htu,
    public_jwk,
    sign_proof,
    thumbprint,
    verify_proof,
)
from mcp_warden.tokens.jws import b64url_encode

URL = "https://mcp.example.com/mcp"
TOKEN = "header.payload.signature"  # only hashed here
NOW = 1_800_000_000.0


def keys() -> list[PrivateKey]:
    return [Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())]


def check(proof: str, **kw: object) -> str:
    args: dict[str, object] = {
        "method": "POST",
        "url": URL,
        "access_token": TOKEN,
        "now": NOW,
        "window": (60.0, 5.0),
    }
    args.update(kw)
    return verify_proof(proof, **args).jkt  # type: ignore[arg-type]


def reason(proof: str, **kw: object) -> str:
    with pytest.raises(DpopError) as info:
        check(proof, **kw)
    assert str(info.value) == REASONS[info.value.reason]
    assert not proof or proof not in str(info.value)
    return info.value.reason


def segment(doc: object) -> str:
    return b64url_encode(json.dumps(doc).encode())


@pytest.mark.parametrize("key", keys(), ids=["EdDSA", "ES256"])
class TestAccepted:
    def test_valid_proof_gives_thumbprint_jti_iat(self, key: PrivateKey) -> None:
        proof = sign_proof(key, method="POST", url=URL, now=NOW, access_token=TOKEN, jti="j1")
        got = verify_proof(
            proof, method="POST", url=URL, access_token=TOKEN, now=NOW, window=(60, 5)
        )
        assert got.jkt == thumbprint(public_jwk(key))
        assert (got.jti, got.iat, got.nonce) == ("j1", NOW, None)

    def test_token_endpoint_proof_needs_no_ath(self, key: PrivateKey) -> None:
        proof = sign_proof(key, method="POST", url=URL, now=NOW)
        assert check(proof, access_token=None) == thumbprint(public_jwk(key))

    def test_window_edges(self, key: PrivateKey) -> None:
        for iat in (NOW - 60, NOW + 5):
            proof = sign_proof(key, method="POST", url=URL, now=iat, access_token=TOKEN)
            check(proof)
        for iat in (NOW - 61, NOW + 6):
            proof = sign_proof(key, method="POST", url=URL, now=iat, access_token=TOKEN)
            assert reason(proof) == "iat_outside_window"


class TestRefused:
    key = Ed25519PrivateKey.generate()

    def proof(self, **kw: object) -> str:
        args: dict[str, object] = {"method": "POST", "url": URL, "now": NOW, "access_token": TOKEN}
        args.update(kw)
        return sign_proof(self.key, **args)  # type: ignore[arg-type]

    def test_not_compact(self) -> None:
        assert reason("") == "malformed"
        assert reason("a.b") == "malformed"
        assert reason(self.proof() + ".x") == "malformed"
        assert reason("x" * 9000) == "malformed"

    @pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "DPOP+JWT", "application/dpop+jwt"])
    def test_typ_exactly_dpop_jwt(self, typ: str | None) -> None:
        assert reason(self.proof(header={"typ": typ})) == "wrong_type"

    @pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "PS256", "Ed25519", 1])
    def test_alg_allow_list(self, alg: object) -> None:
        assert reason(self.proof(header={"alg": alg})) == "unsupported_algorithm"

    def test_alg_none_with_empty_signature(self) -> None:
        head = {"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(self.key)}
        body = {"jti": "x", "htm": "POST", "htu": URL, "iat": int(NOW)}
        assert reason(f"{segment(head)}.{segment(body)}.") == "unsupported_algorithm"

    def test_hs256_signed_with_public_key_as_secret(self) -> None:
        import hashlib
        import hmac

        head = {"typ": "dpop+jwt", "alg": "HS256", "jwk": public_jwk(self.key)}
        body = {"jti": "x", "htm": "POST", "htu": URL, "iat": int(NOW)}
        signing = f"{segment(head)}.{segment(body)}"
        mac = hmac.new(public_jwk(self.key)["x"].encode(), signing.encode(), hashlib.sha256)
        assert reason(f"{signing}.{b64url_encode(mac.digest())}") == "unsupported_algorithm"

    @pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k", "oth"])
    def test_private_members_refused(self, member: str) -> None:
        jwk = {**public_jwk(self.key), member: "AAAA"}
        assert reason(self.proof(header={"jwk": jwk})) == "private_key"

    @pytest.mark.parametrize(
        "jwk",
        [
            None,
            "key",
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "X25519", "x": "A" * 43},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "OKP", "crv": "Ed25519"},
            {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43},  # not on the curve
        ],
    )
    def test_bad_keys(self, jwk: object) -> None:
        assert reason(self.proof(header={"jwk": jwk})) == "bad_key"

    def test_key_must_match_alg(self) -> None:
        ec_jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()))
        assert reason(self.proof(header={"jwk": ec_jwk})) == "bad_key"

    def test_signature_by_another_key(self) -> None:
        other = public_jwk(Ed25519PrivateKey.generate())
        assert reason(self.proof(header={"jwk": other})) == "bad_signature"

    def test_es256_signature_by_another_key(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        proof = sign_proof(
            key,
            method="POST",
            url=URL,
            now=NOW,
            access_token=TOKEN,
            header={"jwk": public_jwk(ec.generate_private_key(ec.SECP256R1()))},
        )
        assert reason(proof) == "bad_signature"

    def test_tampered_payload(self) -> None:
        head, _, sig = self.proof().split(".")
        body = {"jti": "x", "htm": "POST", "htu": URL, "iat": int(NOW), "ath": "y"}
        assert reason(f"{head}.{segment(body)}.{sig}") == "bad_signature"

    def test_crit_refused(self) -> None:
        assert reason(self.proof(header={"crit": ["exp"]})) == "malformed"

    @pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat"])
    def test_required_claims(self, claim: str) -> None:
        head = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public_jwk(self.key)}
        body: dict[str, object] = {
            "jti": "x",
            "htm": "POST",
            "htu": URL,
            "iat": int(NOW),
            "ath": access_token_hash(TOKEN),
        }
        del body[claim]
        signing = f"{segment(head)}.{segment(body)}"
        proof = f"{signing}.{b64url_encode(self.key.sign(signing.encode()))}"
        assert reason(proof) == "missing_claim"

    @pytest.mark.parametrize(
        "claims",
        [
            {"jti": ""},
            {"jti": "x" * 257},
            {"jti": 7},
            {"iat": "1800000000"},
            {"iat": True},
            {"htm": ["POST"]},
            {"htu": None},
            {"nonce": 5},
        ],
    )
    def test_claim_types(self, claims: dict[str, object]) -> None:
        assert reason(self.proof(claims=claims)) == "invalid_claim"

    def test_method(self) -> None:
        assert reason(self.proof(method="GET")) == "wrong_method"
        assert reason(self.proof(method="post")) == "wrong_method"

    @pytest.mark.parametrize(
        "htu",
        [
            "https://mcp.example.com/mcp/",
            "https://mcp.example.com/other",
            "http://mcp.example.com/mcp",
            "https://evil.example.com/mcp",
            "https://mcp.example.com:8443/mcp",
            "https://user@mcp.example.com/mcp",
            "mcp.example.com/mcp",
        ],
    )
    def test_url(self, htu: str) -> None:
        assert reason(self.proof(claims={"htu": htu})) == "wrong_url"

    @pytest.mark.parametrize(
        "htu",
        [
            "HTTPS://MCP.Example.COM/mcp",
            "https://mcp.example.com:443/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#frag",
            "https://mcp.example.com/%6dcp",
        ],
    )
    def test_url_normalized(self, htu: str) -> None:
        check(self.proof(claims={"htu": htu}))

    def test_normalize(self) -> None:
        assert normalize_htu("http://A.example:80") == "http://a.example/"
        assert normalize_htu("http://[::1]:8000/a%2fb") == "http://[::1]:8000/a%2Fb"
        with pytest.raises(ValueError, match="URL"):
            normalize_htu("ftp://a/")

    def test_ath(self) -> None:
        assert reason(self.proof(access_token="another.token.x")) == "wrong_ath"
        assert reason(self.proof(access_token=None)) == "wrong_ath"
        assert reason(self.proof(claims={"ath": 5})) == "invalid_claim"

    def test_nonce(self) -> None:
        seen: list[str | None] = []

        def accept(nonce: str | None) -> bool:
            seen.append(nonce)
            return nonce == "n1"

        check(self.proof(nonce="n1"), nonce_check=accept)
        assert reason(self.proof(nonce="n0"), nonce_check=accept) == "use_nonce"
        assert reason(self.proof(), nonce_check=accept) == "use_nonce"
        assert seen == ["n1", "n0", None]
        with pytest.raises(DpopError) as info:
            check(self.proof(), nonce_check=accept)
        assert info.value.error == "use_dpop_nonce"


def test_rfc9449_example_thumbprint() -> None:
    """The key of RFC 9449's example proof (section 4.1) and its jkt (section 6.1)."""
    jwk = {
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256",
    }
    assert thumbprint(jwk) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def test_errors_are_fixed_text() -> None:
    assert DpopError("replayed").error == "invalid_dpop_proof"
    for text in REASONS.values():
        assert '"' not in text  # safe inside a quoted challenge parameter
        assert "\\" not in text
