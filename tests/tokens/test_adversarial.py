"""The adversarial table: every hostile or broken token is refused with its reason.

One row per case. Each row builds its token against a fresh TokenLab (real
keys directory, file JWKS, memory denylist, fixed clock) and names the reason
the verifier must give. Header-URL rows point at a real HTTP server on
127.0.0.1 that must never be contacted.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.jwks import public_jwk
from mcp_warden.tokens.jws import b64url_encode
from tests.support.clock import NOW
from tests.support.http_server import RecordingServer
from tests.support.tokens import TokenLab, b64json, forge


@dataclass
class Ctx:
    lab: TokenLab
    server_url: str


Row = Callable[[Ctx], str]


@functools.cache
def attacker() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def attacker_kid() -> str:
    return public_jwk(attacker().public_key())["kid"]


def hs256(ctx: Ctx, secret: bytes) -> str:
    signing_input = f"{b64json(ctx.lab.header(alg='HS256'))}.{b64json(ctx.lab.claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(mac)}"


def public_bytes(ctx: Ctx, encoding: Encoding, fmt: PublicFormat) -> bytes:
    return ctx.lab.key.public_key().public_bytes(encoding, fmt)


def flip_bit(segment: str, byte: int, bit: int) -> str:
    """Decode a segment, flip one bit at `byte` (negative from the end), re-encode canonically."""
    data = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    data[byte] ^= 1 << bit
    return b64url_encode(bytes(data))


def with_segment(token: str, index: int, change: Callable[[str], str]) -> str:
    parts = token.split(".")
    parts[index] = change(parts[index])
    return ".".join(parts)


def header_one_bit(ctx: Ctx) -> str:
    # "at+jwt" -> "At+jwt": one bit (0x20) in the signed header bytes; typ still matches
    # case-insensitively, so only the signature can catch it.
    token = ctx.lab.token()
    raw = json.dumps(ctx.lab.header(), separators=(",", ":")).encode()
    return with_segment(token, 0, lambda s: flip_bit(s, raw.index(b"at+jwt"), 5))


def payload_one_bit(ctx: Ctx) -> str:
    token = ctx.lab.token()
    raw = json.dumps(ctx.lab.claims(), separators=(",", ":")).encode()
    return with_segment(token, 1, lambda s: flip_bit(s, raw.index(b"alice") + 4, 0))


def non_canonical_signature(ctx: Ctx) -> str:
    # 64 bytes -> 86 chars, the last carrying 4 unused bits: set one of them.
    def bump(sig: str) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return sig[:-1] + alphabet[alphabet.index(sig[-1]) | 1]

    return with_segment(ctx.lab.token(), 2, bump)


def retired_kid(ctx: Ctx) -> str:
    token = ctx.lab.token()
    ctx.lab.rotate(retire=True)
    return token


def revoked_jti(ctx: Ctx) -> str:
    ctx.lab.denylist.revoke_jti("jti-0001", NOW + 600)
    return ctx.lab.token()


def revoked_sub(ctx: Ctx) -> str:
    ctx.lab.denylist.revoke_sub("alice", NOW)
    return ctx.lab.token()


def attacker_with(ctx: Ctx, **header: object) -> str:
    return forge(attacker(), ctx.lab.header(kid=attacker_kid(), **header), ctx.lab.claims())


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def foreign_alg(ctx: Ctx, alg: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return jwt.encode(
        ctx.lab.claims(), key, algorithm=alg, headers={"typ": "at+jwt", "kid": ctx.lab.kid}
    )


def missing(name: str) -> Row:
    return lambda ctx: ctx.lab.token(claims=ctx.lab.claims(**{name: None}))


def claims(**changes: object) -> Row:
    return lambda ctx: ctx.lab.token(claims=ctx.lab.claims(**changes))


def header(**changes: object) -> Row:
    return lambda ctx: ctx.lab.token(header=ctx.lab.header(**changes))


TABLE: list[tuple[str, Row, str]] = [
    # algorithm confusion
    (
        "alg none, empty signature",
        lambda c: f"{b64json(c.lab.header(alg='none'))}.{b64json(c.lab.claims())}.",
        "unsupported_algorithm",
    ),
    ("alg none with a signature", header(alg="none"), "unsupported_algorithm"),
    ("alg eddsa (lower case)", header(alg="eddsa"), "unsupported_algorithm"),
    (
        "HS256 keyed with raw public key",
        lambda c: hs256(c, public_bytes(c, Encoding.Raw, PublicFormat.Raw)),
        "unsupported_algorithm",
    ),
    (
        "HS256 keyed with public PEM",
        lambda c: hs256(c, public_bytes(c, Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)),
        "unsupported_algorithm",
    ),
    (
        "HS256 keyed with public JWK",
        lambda c: hs256(c, json.dumps(public_jwk(c.lab.key.public_key())).encode()),
        "unsupported_algorithm",
    ),
    ("RS256", lambda c: foreign_alg(c, "RS256", rsa_key()), "unsupported_algorithm"),
    (
        "ES256",
        lambda c: foreign_alg(c, "ES256", ec.generate_private_key(ec.SECP256R1())),
        "unsupported_algorithm",
    ),
    # keys
    ("signed by an unpublished key (its own kid)", attacker_with, "unknown_key"),
    (
        "signed by an unpublished key (our kid)",
        lambda c: c.lab.token(key=attacker()),
        "bad_signature",
    ),
    ("retired kid", retired_kid, "unknown_key"),
    ("kid with ../", header(kid="../../../../etc/passwd"), "malformed"),
    ("kid missing", header(kid=None), "malformed"),
    ("kid not a string", header(kid=42), "malformed"),
    (
        "jku pointing at a server",
        lambda c: attacker_with(c, jku=f"{c.server_url}/jwks.json"),
        "unknown_key",
    ),
    (
        "x5u pointing at a server",
        lambda c: attacker_with(c, x5u=f"{c.server_url}/cert.pem"),
        "unknown_key",
    ),
    (
        "embedded jwk header",
        lambda c: attacker_with(c, jwk=public_jwk(attacker().public_key())),
        "unknown_key",
    ),
    ("x5c header", lambda c: attacker_with(c, x5c=["MIIB"]), "unknown_key"),
    # tampering
    ("one bit in header", header_one_bit, "bad_signature"),
    ("one bit in payload", payload_one_bit, "bad_signature"),
    (
        "one bit in signature",
        lambda c: with_segment(c.lab.token(), 2, lambda s: flip_bit(s, 10, 3)),
        "bad_signature",
    ),
    (
        "signature truncated to 63 bytes",
        lambda c: with_segment(
            c.lab.token(), 2, lambda s: b64url_encode(base64.urlsafe_b64decode(s + "==")[:63])
        ),
        "bad_signature",
    ),
    # time
    ("expired", claims(iat=NOW - 700, nbf=NOW - 700, exp=NOW - 100), "expired"),
    ("exp equal to now", claims(iat=NOW - 600, nbf=NOW - 600, exp=NOW), "expired"),
    ("nbf in the future", claims(nbf=NOW + 31), "not_yet_valid"),
    ("iat in the future", claims(iat=NOW + 31, nbf=NOW + 31, exp=NOW + 631), "not_yet_valid"),
    (
        "lifetime above the maximum",
        claims(iat=NOW - 10, exp=NOW - 10 + 86_401),
        "lifetime_too_long",
    ),
    ("exp before iat", claims(iat=NOW + 10, exp=NOW + 5), "invalid_claim"),
    # claims
    *[
        (f"{name} missing", missing(name), "missing_claim")
        for name in ("iss", "sub", "aud", "iat", "exp", "jti", "tools")
    ],
    ("exp as a string", claims(exp=str(NOW + 600)), "invalid_claim"),
    ("exp as a float", claims(exp=NOW + 600.0), "invalid_claim"),
    ("iat as a boolean", claims(iat=True), "invalid_claim"),
    ("nbf as a string", claims(nbf=str(NOW)), "invalid_claim"),
    ("sub empty", claims(sub=""), "invalid_claim"),
    ("sub a number", claims(sub=7), "invalid_claim"),
    ("wrong aud", claims(aud="http://127.0.0.1:9999/mcp"), "wrong_audience"),
    ("aud as a list", claims(aud=["http://127.0.0.1:8000/mcp"]), "invalid_claim"),
    ("wrong iss", claims(iss="someone-else"), "wrong_issuer"),
    ("iss that merely starts with ours", claims(iss="mcp-warden.evil"), "wrong_issuer"),
    ("tools as a string", claims(tools="web_search"), "invalid_claim"),
    ("tools with a non-string", claims(tools=["web_search", 3]), "invalid_claim"),
    ("tools with a wildcard", claims(tools=["*"]), "invalid_claim"),
    ("tools with a bad name", claims(tools=["web search"]), "invalid_claim"),
    ("payload a JSON array", lambda c: c.lab.token(claims="[1,2]"), "malformed"),
    (
        "payload with NaN",
        lambda c: c.lab.token(claims=json.dumps(c.lab.claims(exp=float("nan")))),
        "malformed",
    ),
    ("payload not JSON", lambda c: c.lab.token(claims="{nope"), "malformed"),
    # header
    ("typ JWT", header(typ="JWT"), "wrong_type"),
    ("typ missing", header(typ=None), "wrong_type"),
    ("unknown crit", header(crit=["exp-ext"], **{"exp-ext": 1}), "malformed"),
    ("b64 false", header(b64=False, crit=["b64"]), "malformed"),
    # revocation
    ("revoked jti", revoked_jti, "revoked"),
    ("revoked sub", revoked_sub, "revoked"),
    # shape
    ("9 KiB of junk", lambda c: "A" * 9 * 1024, "malformed"),
    (
        "9 KiB token of valid shape",
        lambda c: c.lab.token(claims=c.lab.claims(pad="x" * 9000)),
        "malformed",
    ),
    ("non-canonical base64url (unused bits)", non_canonical_signature, "malformed"),
    ("base64 padding", lambda c: c.lab.token() + "==", "malformed"),
    ("standard base64 alphabet", lambda c: c.lab.token()[:-1] + "+", "malformed"),
    ("four segments", lambda c: c.lab.token() + ".AAAA", "malformed"),
    ("two segments", lambda c: c.lab.token().rsplit(".", 1)[0], "malformed"),
    ("empty token", lambda c: "", "malformed"),
    ("whitespace around", lambda c: f" {c.lab.token()}\n", "malformed"),
    ("non-ASCII", lambda c: c.lab.token() + "é", "malformed"),
    (
        "header not JSON",
        lambda c: f"{b64url_encode(b'{nope')}.{b64json(c.lab.claims())}.AAAA",
        "malformed",
    ),
]


@pytest.mark.parametrize(("build", "reason"), [pytest.param(b, r, id=i) for i, b, r in TABLE])
def test_refused_with_reason(
    lab: TokenLab, recorder: RecordingServer, build: Row, reason: str
) -> None:
    before = len(recorder.requests)
    token = build(Ctx(lab, recorder.url))
    with pytest.raises(TokenError) as info:
        lab.verifier.verify(token)
    assert info.value.reason == reason, str(info.value)
    assert token not in str(info.value) or token == ""
    assert len(recorder.requests) == before, "a header URL was fetched"


def test_the_table_rows_start_from_a_token_that_verifies(lab: TokenLab) -> None:
    """Guards the table: the unmodified token it derives from is accepted."""
    claims = lab.verifier.verify(lab.token())
    assert claims.sub == "alice"
    assert claims.tools == frozenset({"web_search"})
