"""Registered OAuth clients: what the registry keeps of each, their secrets and public keys.

A client is either a secret client (`client_secret_basic` or
`client_secret_post`: the registry keeps the SHA-256 of its secret) or a
`private_key_jwt` client (RFC 7523: the registry keeps its public JWK and
the one algorithm it signs with). Either way it has a client_id (random,
never chosen by the operator), a name (a label for `clients list`), the
tools it may be granted and the lifetime of its tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from mcp_warden.errors import WardenError
from mcp_warden.tokens.issuer import MintError, normalize_tools

AuthMethod = Literal["client_secret", "private_key_jwt"]

CLIENT_ID_PREFIX = "mcpw_"
SECRET_PREFIX = "mcpws_"  # noqa: S105  (a prefix that secret scanners see, not a secret)
SECRET_BYTES = 32  # 256 bits from `secrets`
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_CLIENT_ID_CHARS = 128
DEFAULT_CLIENT_TTL = 3600
"""A client's token lifetime when `clients add` is given no --ttl (capped by MCP_TOKEN_MAX_TTL)."""

# Assertion algorithms a client key may use, by key type (RFC 7518, RFC 8037).
ALGORITHMS = ("EdDSA", "ES256", "RS256")
MIN_RSA_BITS = 2048
# JWK members that carry private or symmetric key material (RFC 7518 section 6, RFC 8037).
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_JWK_BYTES = 16 * 1024


class ClientsError(WardenError):
    """A registry request that cannot be done as asked (exit 2: fix the command)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Client:
    """One registered client, as stored (never its secret)."""

    client_id: str
    name: str
    tools: tuple[str, ...]
    ttl: int
    created: int
    secret_hash: str | None = field(default=None, repr=False)
    jwk: Mapping[str, str] | None = None
    require_dpop: bool = False
    """RFC 9449: tokens only with a DPoP proof, bound to its key (`clients add --require-dpop`)."""

    @property
    def auth_method(self) -> AuthMethod:
        return "client_secret" if self.secret_hash is not None else "private_key_jwt"

    @property
    def algorithm(self) -> str | None:
        """The one assertion algorithm a private_key_jwt client signs with."""
        return None if self.jwk is None else self.jwk["alg"]

    def check_secret(self, presented: str) -> bool:
        """True when `presented` is this client's secret (constant-time on the hashes)."""
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, hash_secret(presented))

    def with_secret(self, secret: str) -> Client:
        return replace(self, secret_hash=hash_secret(secret), jwk=None)

    def to_json(self) -> str:
        doc = {
            "client_id": self.client_id,
            "name": self.name,
            "tools": list(self.tools),
            "ttl": self.ttl,
            "created": self.created,
            "secret_hash": self.secret_hash,
            "jwk": dict(self.jwk) if self.jwk is not None else None,
            "require_dpop": self.require_dpop,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Client:
        """A stored record; ValueError when it is damaged."""
        try:
            doc = json.loads(text)
            jwk = doc["jwk"]
            client = cls(
                client_id=str(doc["client_id"]),
                name=str(doc["name"]),
                tools=tuple(str(t) for t in doc["tools"]),
                ttl=int(doc["ttl"]),
                created=int(doc["created"]),
                secret_hash=None if doc["secret_hash"] is None else str(doc["secret_hash"]),
                jwk=None if jwk is None else {str(k): str(v) for k, v in jwk.items()},
                require_dpop=doc.get("require_dpop", False),  # absent in records before DPoP
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"damaged client record ({exc!r})") from None
        if type(client.require_dpop) is not bool:
            raise ValueError("damaged client record: require_dpop is not a boolean")
        if (client.secret_hash is None) == (client.jwk is None):
            raise ValueError("damaged client record: neither or both of secret and key")
        return client

    def listing(self) -> dict[str, object]:
        """What `clients list` shows: everything but the secret's hash and the key itself."""
        method = (
            "client_secret_basic, client_secret_post"
            if self.secret_hash is not None
            else f"private_key_jwt ({self.algorithm})"
        )
        return {
            "client_id": self.client_id,
            "name": self.name,
            "tools": list(self.tools),
            "ttl": self.ttl,
            "auth": method,
            "dpop": "required" if self.require_dpop else "optional",
            "created": self.created,
        }


def new_client_id() -> str:
    """96 random bits in hex behind a fixed prefix (never starts with "-", safe in URLs)."""
    return CLIENT_ID_PREFIX + secrets.token_hex(12)


def new_secret() -> str:
    """A client secret: 256 bits from `secrets`, base64url, behind a prefix secret scanners see."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The SHA-256 (hex) under which the registry keeps a client secret.

    Why a plain SHA-256 and not a password hash (scrypt, Argon2): every secret
    is generated here with 256 bits from `secrets`, never chosen by a person.
    Slow, salted hashes exist to make guessing low-entropy passwords from a
    stolen table expensive; against 2**256 possibilities a fast hash is
    already out of reach, and salt adds nothing when no two secrets are
    alike. A slow hash would cost the token endpoint milliseconds of CPU per
    request and hand anyone with a wrong secret a way to burn that CPU.
    Comparison is on the hashes with `hmac.compare_digest`.
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ClientsError(
            f"client name {name[:40]!r} is not 1-64 characters of A-Z a-z 0-9 _ - .; choose another"
        )
    return name


def check_tools(tools: Iterable[str]) -> tuple[str, ...]:
    try:
        return tuple(normalize_tools(t.strip() for t in tools if t.strip()))
    except MintError as exc:
        raise ClientsError(str(exc)) from None


def check_ttl(ttl: int, max_ttl: int) -> int:
    if type(ttl) is not int or not 1 <= ttl <= max_ttl:
        raise ClientsError(
            f"--ttl must be a whole number of seconds from 1 to {max_ttl} (MCP_TOKEN_MAX_TTL)"
        )
    return ttl


def client_jwk(doc: object, *, what: str = "the JWK") -> dict[str, str]:
    """The public JWK a private_key_jwt client is registered with, normalized, with its `alg`.

    Accepted: OKP Ed25519 (EdDSA), EC P-256 (ES256), RSA of at least 2048 bits
    (RS256). Refused: anything holding private or symmetric key material, any
    other key type, curve or algorithm, a `use` other than sig.
    """
    if not isinstance(doc, dict) or "kty" not in doc:
        raise ClientsError(f"{what} is not a JWK (a JSON object with kty); give one public key")
    held = [m for m in PRIVATE_MEMBERS if m in doc]
    if held:
        raise ClientsError(
            f"{what} holds private key material ({held[0]}); give the public key only "
            "and keep the private key with the client"
        )
    kty, crv, alg = doc.get("kty"), doc.get("crv"), doc.get("alg")
    members: tuple[str, ...]
    if kty == "OKP" and crv == "Ed25519":
        wanted, members = "EdDSA", ("kty", "crv", "x")
    elif kty == "EC" and crv == "P-256":
        wanted, members = "ES256", ("kty", "crv", "x", "y")
    elif kty == "RSA":
        wanted, members = "RS256", ("kty", "n", "e")
    else:
        raise ClientsError(
            f"{what} is a {kty}/{crv} key; use an Ed25519 (EdDSA), P-256 (ES256) or "
            f"RSA >= {MIN_RSA_BITS} bits (RS256) key"
        )
    if alg is not None and alg != wanted:
        raise ClientsError(f"{what} says alg {str(alg)[:20]!r}; a {kty} key here signs {wanted}")
    if doc.get("use", "sig") != "sig":
        raise ClientsError(f"{what} has use {str(doc.get('use'))[:20]!r}; it must be sig")
    if not all(isinstance(doc.get(m), str) for m in members):
        raise ClientsError(f"{what} lacks {', '.join(members)} as strings")
    jwk = {m: doc[m] for m in members}
    jwk["alg"] = wanted
    public_key(jwk)  # refuses what PyJWT and cryptography cannot load
    return jwk


def public_key(jwk: Mapping[str, str]) -> Any:
    """The key object of a normalized client JWK (ClientsError when unusable or too weak)."""
    try:
        key = PyJWK(dict(jwk), algorithm=jwk["alg"]).key
    except (PyJWTError, ValueError, TypeError) as exc:
        raise ClientsError(f"the JWK is not a usable {jwk.get('alg')} public key ({exc})") from None
    if jwk["alg"] == "RS256" and key.key_size < MIN_RSA_BITS:
        raise ClientsError(
            f"the RSA key has {key.key_size} bits; use at least {MIN_RSA_BITS} (or an Ed25519 key)"
        )
    return key
