"""DPoP proofs (RFC 9449): strict verification of one proof, shared by the issuer and `serve`.

`verify_proof` runs the checks of RFC 9449 section 4.3 on a proof JWT, first
failure wins, and returns the key's RFC 7638 thumbprint, `jti` and `iat`:

size and shape (tokens/jws: three canonical base64url segments, 8 KiB) ->
header JSON: `typ` exactly `dpop+jwt`, `alg` EdDSA or ES256 (none, HS*, RS*
and every other alg are refused before any key is read), no `crit`/`b64` ->
`jwk`: a public OKP/Ed25519 or EC/P-256 key, refused when it carries any
private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`), its `kty`/`crv`
matching `alg` -> signature under that key over the exact received bytes ->
payload JSON: `jti` (string, 1-256 characters), `htm` equal to the request
method, `htu` equal to the request URL after RFC 3986 normalization (scheme and
host lower-case, default port removed, empty path as `/`, percent-encoding
normalized, no query or fragment), `iat` a NumericDate inside the window
(`window` = (seconds past, seconds future)) -> `ath` equal to
base64url(SHA-256(access token)) when a token is presented -> the nonce, when
the caller checks one.

The caller keeps the replay cache (tokens/replay): a proof is single-use per
(thumbprint, jti) within the window. Refusals are `DpopError(reason)`, whose
message comes from a fixed table and never echoes the proof or the token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mcp_warden.errors import WardenError
from mcp_warden.tokens.jws import (
    MalformedError,
    b64url_decode,
    b64url_encode,
    decode_segment,
    ed25519_verify,
    json_object,
    split_compact,
)

ALGORITHMS = ("EdDSA", "ES256")
"""The proof algorithms we accept, in the order the `algs` challenge parameter lists them."""
DPOP_TYPE = "dpop+jwt"
MAX_JTI_CHARS = 256
MAX_HTU_CHARS = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_CACHE_SIZE = 1024

DpopReason = Literal[
    "missing_proof",
    "multiple_proofs",
    "malformed",
    "wrong_type",
    "unsupported_algorithm",
    "bad_key",
    "private_key",
    "bad_signature",
    "missing_claim",
    "invalid_claim",
    "wrong_method",
    "wrong_url",
    "iat_outside_window",
    "wrong_ath",
    "use_nonce",
    "replayed",
    "replay_unavailable",
    "key_mismatch",
    "bound_token_as_bearer",
    "unbound_token",
    "proof_without_token",
    "dpop_required",
]

REASONS: Mapping[DpopReason, str] = {
    "missing_proof": "a DPoP proof is required with this token",
    "multiple_proofs": "exactly one DPoP header is allowed",
    "malformed": "the DPoP proof is not a well-formed compact JWS",
    "wrong_type": "the DPoP proof typ must be dpop+jwt",
    "unsupported_algorithm": "the DPoP proof alg must be EdDSA or ES256",
    "bad_key": "the DPoP proof jwk must be a public Ed25519 or P-256 key",
    "private_key": "the DPoP proof jwk must not contain private key material",
    "bad_signature": "the DPoP proof signature does not verify under its jwk",
    "missing_claim": "the DPoP proof lacks a required claim (jti, htm, htu, iat)",
    "invalid_claim": "a DPoP proof claim has the wrong type or length",
    "wrong_method": "the DPoP proof htm does not match the request method",
    "wrong_url": "the DPoP proof htu does not match the request URL",
    "iat_outside_window": "the DPoP proof iat is outside the accepted window",
    "wrong_ath": "the DPoP proof ath does not match the access token",
    "use_nonce": "a fresh server nonce is required in the DPoP proof",
    "replayed": "the DPoP proof was already used",
    "replay_unavailable": "the DPoP replay cache cannot be checked; try again later",
    "key_mismatch": "the DPoP proof key is not the key the token is bound to",
    "bound_token_as_bearer": "this token is bound to a key and must be sent as DPoP",
    "unbound_token": "a token without a key binding cannot be sent as DPoP",
    "proof_without_token": "a DPoP proof needs Authorization: DPoP with a bound token",
    "dpop_required": "this server accepts only DPoP-bound tokens",
}


class DpopError(WardenError):
    """A refused DPoP proof or request; the message is REASONS[reason], nothing else."""

    reason: DpopReason

    def __init__(self, reason: DpopReason) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason

    @property
    def error(self) -> str:
        """The RFC 9449 error code of the challenge: use_dpop_nonce or invalid_dpop_proof."""
        return "use_dpop_nonce" if self.reason == "use_nonce" else "invalid_dpop_proof"


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified proof: its key's thumbprint, and the claims the caller still needs."""

    jkt: str
    jti: str
    iat: float
    nonce: str | None


# -- helpers shared with the issuer and the client --------------------------


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint (base64url) of a public OKP or EC JWK."""
    if jwk.get("kty") == "OKP":
        members = {"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}
    elif jwk.get("kty") == "EC":
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    else:
        raise DpopError("bad_key")
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """The `ath` of a token: base64url(SHA-256(its ASCII bytes))."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _pct(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalize_htu(url: str) -> str:
    """`url` as RFC 9449 compares `htu`: scheme, host and path normalized, no query or fragment.

    Raises ValueError for what is not an absolute http(s) URL.
    """
    if len(url) > MAX_HTU_CHARS or not url.isascii() or not url.isprintable():
        raise ValueError("not a URL we accept")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname.lower()  # urlsplit lower-cases, kept explicit
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError for a port out of range
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _PCT.sub(_pct, parts.path) or "/"
    return f"{scheme}://{netloc}{path}"


# -- keys ----------------------------------------------------------------------

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
_keys: dict[tuple[str, ...], tuple[PublicKey, str]] = {}
_keys_lock = threading.Lock()


def _public_key(alg: str, jwk: object) -> tuple[PublicKey, str]:
    """The key and thumbprint of a proof's `jwk` header, checked against `alg`."""
    if type(jwk) is not dict:
        raise DpopError("bad_key")
    if PRIVATE_MEMBERS.intersection(jwk):
        raise DpopError("private_key")
    kty, crv, x, y = jwk.get("kty"), jwk.get("crv"), jwk.get("x"), jwk.get("y")
    if alg == "EdDSA" and kty == "OKP" and crv == "Ed25519" and type(x) is str and y is None:
        members: tuple[str, ...] = ("OKP", x)
    elif alg == "ES256" and kty == "EC" and crv == "P-256" and type(x) is str and type(y) is str:
        members = ("EC", x, y)
    else:
        raise DpopError("bad_key")
    cached = _keys.get(members)
    if cached is not None:
        return cached
    entry = (_load_key(members), thumbprint(jwk))
    with _keys_lock:
        if len(_keys) >= _KEY_CACHE_SIZE:
            _keys.clear()
        _keys[members] = entry
    return entry


def _load_key(members: tuple[str, ...]) -> PublicKey:
    """("OKP", x) or ("EC", x, y) as a key; DpopError("bad_key") when not a valid point."""
    try:
        coordinates = [b64url_decode(member) for member in members[1:]]
        if any(len(c) != 32 for c in coordinates):  # both curves: 32 bytes
            raise DpopError("bad_key")
        if members[0] == "OKP":
            return Ed25519PublicKey.from_public_bytes(coordinates[0])
        x, y = (int.from_bytes(c, "big") for c in coordinates)
        # ValueError for a point not on the curve
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (MalformedError, ValueError):
        raise DpopError("bad_key") from None


def _signature_valid(key: PublicKey, signature: bytes, message: bytes) -> bool:
    if isinstance(key, Ed25519PublicKey):
        return ed25519_verify(key, signature, message)
    if len(signature) != 64:  # ES256: r || s (RFC 7518 3.4)
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# -- the check -------------------------------------------------------------------


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None,
    now: float,
    window: tuple[float, float] = (60.0, 5.0),
    nonce_check: Callable[[str | None], bool] | None = None,
) -> Proof:
    """Verify one DPoP proof (RFC 9449 section 4.3) for a request; DpopError when refused.

    `url` is the URL the client addresses (compared after `normalize_htu`);
    `access_token` is the token the request presents (its `ath` is then
    required), None at a token endpoint; `window` is (seconds in the past,
    seconds in the future) an `iat` may be; `nonce_check` gets the proof's
    `nonce` claim (None when absent) and returns whether it is acceptable.
    """
    jkt, claims = _verified_claims(proof)
    jti, iat, nonce = _check_claims(claims, method=method, url=url, now=now, window=window)
    if access_token is not None:
        ath = claims.get("ath")
        if type(ath) is not str:
            raise DpopError("wrong_ath" if ath is None else "invalid_claim")
        expected = access_token_hash(access_token)
        if not hmac.compare_digest(ath.encode("ascii", "replace"), expected.encode("ascii")):
            raise DpopError("wrong_ath")
    if nonce_check is not None and not nonce_check(nonce):
        raise DpopError("use_nonce")
    return Proof(jkt=jkt, jti=jti, iat=iat, nonce=nonce)


def _verified_claims(proof: str) -> tuple[str, dict[str, Any]]:
    """The thumbprint and payload of a proof whose header and signature pass."""
    try:
        header_b64, payload_b64, signature_b64 = split_compact(proof)
        header = json_object(decode_segment(header_b64), "header")
        signature = decode_segment(signature_b64)
        payload_raw = decode_segment(payload_b64)
    except MalformedError:
        raise DpopError("malformed") from None
    if header.get("typ") != DPOP_TYPE:
        raise DpopError("wrong_type")
    alg = header.get("alg")
    if type(alg) is not str or alg not in ALGORITHMS:
        raise DpopError("unsupported_algorithm")
    if "crit" in header or "b64" in header:
        raise DpopError("malformed")
    key, jkt = _public_key(alg, header.get("jwk"))
    signing_input = proof[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    if not _signature_valid(key, signature, signing_input):
        raise DpopError("bad_signature")
    try:
        return jkt, json_object(payload_raw, "payload")
    except MalformedError:
        raise DpopError("malformed") from None


def _check_claims(
    claims: dict[str, Any], *, method: str, url: str, now: float, window: tuple[float, float]
) -> tuple[str, float, str | None]:
    """jti, iat and nonce of a payload whose jti, htm, htu and iat pass."""
    for name in ("jti", "htm", "htu", "iat"):
        if name not in claims:
            raise DpopError("missing_claim")
    jti, htm, htu, iat = claims["jti"], claims["htm"], claims["htu"], claims["iat"]
    nonce = claims.get("nonce")
    if (
        type(jti) is not str
        or not 1 <= len(jti) <= MAX_JTI_CHARS
        or type(htm) is not str
        or type(htu) is not str
        or type(iat) not in (int, float)  # bool is refused: its type is not int
        or not math.isfinite(iat)
        or (nonce is not None and (type(nonce) is not str or len(nonce) > MAX_JTI_CHARS))
    ):
        raise DpopError("invalid_claim")
    if htm != method:
        raise DpopError("wrong_method")
    try:
        same_url = normalize_htu(htu) == normalize_htu(url)
    except ValueError:
        same_url = False
    if not same_url:
        raise DpopError("wrong_url")
    past, future = window
    if not now - past <= iat <= now + future:
        raise DpopError("iat_outside_window")
    return jti, float(iat), nonce


# -- making proofs (the Python client, tests) -----------------------------------

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of a private Ed25519 or P-256 key (no private member)."""
    if isinstance(key, Ed25519PrivateKey):
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    if not isinstance(key.curve, ec.SECP256R1):
        raise TypeError("only P-256 EC keys make ES256 proofs")
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": b64url_encode(numbers.y.to_bytes(32, "big")),
    }


def sign_proof(
    key: PrivateKey,
    *,
    method: str,
    url: str,
    now: float,
    access_token: str | None = None,
    nonce: str | None = None,
    jti: str | None = None,
    header: Mapping[str, object] | None = None,
    claims: Mapping[str, object] | None = None,
) -> str:
    """A DPoP proof for one request (`htu` is `url` without query or fragment).

    `header` and `claims` override members (tests build refused proofs with them).
    """
    alg = "EdDSA" if isinstance(key, Ed25519PrivateKey) else "ES256"
    head: dict[str, object] = {"typ": DPOP_TYPE, "alg": alg, "jwk": public_jwk(key)}
    head.update(header or {})
    parts = urlsplit(url)
    body: dict[str, object] = {
        "jti": jti or b64url_encode(secrets.token_bytes(18)),
        "htm": method,
        "htu": f"{parts.scheme}://{parts.netloc}{parts.path}",
        "iat": int(now),
    }
    if access_token is not None:
        body["ath"] = access_token_hash(access_token)
    if nonce is not None:
        body["nonce"] = nonce
    body.update(claims or {})
    signing_input = f"{_segment(head)}.{_segment(body)}"
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(signing_input.encode("ascii"))
    else:
        r, s = decode_dss_signature(
            key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        )
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{b64url_encode(signature)}"


def _segment(doc: Mapping[str, object]) -> str:
    return b64url_encode(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
