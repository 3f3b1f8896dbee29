"""Strict base64url, compact splitting, and the signature path against published vectors.

RFC 8037 Appendix A (A.1 key, A.3 thumbprint, A.4 signature) and every
Wycheproof Ed25519 verification vector go through the same functions the
verifier uses: `public_key_from_jwk` for the key and `ed25519_verify` for the
signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.jwks import FileJwks, public_jwk, public_key_from_jwk, thumbprint
from mcp_warden.tokens.jws import (
    MalformedError,
    b64url_decode,
    b64url_encode,
    decode_segment,
    ed25519_verify,
    split_compact,
)
from mcp_warden.tokens.keys import kid_of
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier
from tests.support.procs import vectors_dir


def load(name: str) -> Any:
    return json.loads((vectors_dir() / name).read_text())


class TestBase64url:
    @given(st.binary(max_size=200))
    def test_round_trip(self, data: bytes) -> None:
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data

    @pytest.mark.parametrize(
        "text",
        ["QQ==", "QQ=", "Q", "QR", "QUJD+A", "QUJD/A", "QU JD", "QUJD\n", "QUI%", "QUJDé"],
    )
    def test_refused(self, text: str) -> None:
        with pytest.raises(MalformedError):
            b64url_decode(text)

    def test_only_one_spelling(self) -> None:
        assert b64url_decode("QQ") == b"A"
        for second_spelling in ("QR", "QS", "QT"):  # same byte, unused bits set
            with pytest.raises(MalformedError, match="non-canonical"):
                b64url_decode(second_spelling)


class TestSplit:
    def test_three_segments(self) -> None:
        assert split_compact("aGk.cGF5.c2ln") == ("aGk", "cGF5", "c2ln")
        assert split_compact("aGk..") == ("aGk", "", "")

    @pytest.mark.parametrize(
        "token", ["", ".a.b", "a.b", "a.b.c.d", "a.b.c.", "a b.c.d", "a.b.c\n", "a.b=.c"]
    )
    def test_refused(self, token: str) -> None:
        with pytest.raises(MalformedError):
            split_compact(token)

    def test_size_cap_before_anything(self) -> None:
        with pytest.raises(MalformedError, match="8192"):
            split_compact("A" * 8193)
        assert split_compact("A" * 8190 + "..")[0] == "A" * 8190


class TestRfc8037:
    def test_a3_thumbprint_of_a1_key(self) -> None:
        v = load("rfc8037_a4.json")
        assert thumbprint(v["jwk_public"]["x"]) == v["jwk_thumbprint_sha256"]
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["d_hex"]))
        assert b64url_decode(v["jwk_private"]["d"]) == bytes.fromhex(v["d_hex"])
        assert public_jwk(private.public_key())["x"] == v["jwk_public"]["x"]
        assert kid_of(private.public_key()) == v["jwk_thumbprint_sha256"]

    def test_a4_signature_verifies_through_our_path(self) -> None:
        v = load("rfc8037_a4.json")
        key = public_key_from_jwk(v["jwk_public"])
        header, payload, signature = split_compact(v["a4"]["compact"])
        assert f"{header}.{payload}" == v["a4"]["signing_input"]
        assert json.loads(decode_segment(header)) == json.loads(v["a4"]["protected_header"])
        assert decode_segment(payload) == v["a4"]["payload"].encode()
        sig = decode_segment(signature)
        message = v["a4"]["signing_input"].encode()
        assert ed25519_verify(key, sig, message)
        assert not ed25519_verify(key, sig, message + b".")
        assert not ed25519_verify(key, bytes([sig[0] ^ 1]) + sig[1:], message)

    def test_a4_through_the_verifier_fails_only_for_its_header(self, tmp_path: Path) -> None:
        """A.4 has no typ: the verifier refuses it as wrong_type, after its key is found."""
        v = load("rfc8037_a4.json")
        jwks = tmp_path / "jwks.json"
        jwk = {**v["jwk_public"], "kid": thumbprint(v["jwk_public"]["x"])}
        jwks.write_text(json.dumps({"keys": [jwk]}))
        verifier = Verifier(FileJwks(jwks), issuer="i", audience="a", denylist=MemoryDenylist())
        with pytest.raises(TokenError) as info:
            verifier.verify(v["a4"]["compact"])
        assert info.value.reason == "wrong_type"


def test_wycheproof_ed25519_vectors() -> None:
    """All 151 vectors (88 valid, 63 invalid): the key via its JWK, the signature via our path."""
    doc = load("ed25519.json")
    seen: dict[str, int] = {"valid": 0, "invalid": 0}
    wrong = []
    for group in doc["testGroups"]:
        key = public_key_from_jwk(group["publicKeyJwk"])
        for test in group["tests"]:
            accepted = ed25519_verify(key, bytes.fromhex(test["sig"]), bytes.fromhex(test["msg"]))
            seen[test["result"]] += 1
            if accepted != (test["result"] == "valid"):
                wrong.append((test["tcId"], test["result"]))
    assert wrong == []
    assert seen == {"valid": 88, "invalid": 63}
    assert doc["numberOfTests"] == 151
