"""private_key_jwt client assertions (RFC 7523 section 2.2 and 3), verified with PyJWT.

What an assertion must be, in the order checked (first failure wins):

1. `client_assertion_type` is `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`;
2. its header names EdDSA, ES256 or RS256 (read before anything is
   verified: `none`, HS256 and every other algorithm are refused here, so
   no key is ever used with an algorithm the token chose);
3. that is the one algorithm the client is registered for (the key type
   decides it: Ed25519, P-256, RSA >= 2048 bits), and PyJWT verifies with
   exactly that one in its algorithm list;
4. claims: `iss` = `sub` = client_id, `aud` the issuer URL or the token
   endpoint (a string, or a list holding one of them), `exp` in the future
   (no leeway) and at most MAX_LIFETIME_SECONDS ahead (plus MCP_TOKEN_LEEWAY
   for a client clock running ahead), `iat` and `nbf` if present not beyond
   the leeway in the future, `jti` a string of 1-256 characters;
5. the jti has not been used by this client before, at any issuer process
   (the registry's replay cache keeps it until `exp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)

from mcp_warden.issuer.clients import ALGORITHMS, Client, ClientsError, public_key
from mcp_warden.issuer.oauth import OAuthError, invalid_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME_SECONDS = 300
MAX_JTI_CHARS = 256


def _refuse(description: str, reason: str, client_id: str | None) -> OAuthError:
    return invalid_client(description, reason, client_id=client_id, basic=False)


def assertion_algorithm(assertion: str, client_id: str | None) -> str:
    """The header's alg when it is one we accept (checked before any key is touched)."""
    try:
        header = jwt.get_unverified_header(assertion)
    except PyJWTError:
        raise _refuse(
            "client_assertion is not a compact JWT; sign one as RFC 7523 section 3 says",
            "assertion_malformed",
            client_id,
        ) from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        shown = alg[:20] if isinstance(alg, str) else type(alg).__name__
        raise _refuse(
            f"client_assertion alg {shown!r} is not accepted; sign it with {', '.join(ALGORITHMS)}",
            "assertion_algorithm",
            client_id,
        )
    return str(alg)


def claimed_client_id(assertion: str) -> str | None:
    """The unverified `iss` of an assertion: which client's key to verify it with."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except PyJWTError:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) and iss else None


def verify_assertion(
    assertion: str,
    client: Client,
    *,
    audiences: Sequence[str],
    now: int,
    leeway: int,
) -> tuple[str, int]:
    """(jti, exp) of a valid assertion by `client`; OAuthError invalid_client otherwise."""
    cid = client.client_id
    alg = assertion_algorithm(assertion, cid)
    if client.jwk is None or client.algorithm is None:
        raise _refuse(
            "this client authenticates with a client secret, not private_key_jwt",
            "wrong_auth_method",
            cid,
        )
    if alg != client.algorithm:
        raise _refuse(
            f"this client is registered with a {client.algorithm} key; sign the assertion "
            f"with {client.algorithm}",
            "assertion_algorithm",
            cid,
        )
    try:
        key = public_key(client.jwk)
    except ClientsError:
        raise _refuse(
            "this client's registered key is unusable; ask the operator to register a new one",
            "client_key_unusable",
            cid,
        ) from None
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=[client.algorithm],
            audience=list(audiences),
            issuer=cid,
            options={
                "require": ["iss", "sub", "aud", "exp", "jti"],
                "verify_exp": False,  # checked below: no leeway, and a maximum lifetime
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except InvalidSignatureError:
        raise _refuse(
            "client_assertion signature does not verify under this client's registered key",
            "assertion_signature",
            cid,
        ) from None
    except InvalidAudienceError:
        raise _refuse(
            f"client_assertion aud must be the issuer URL {audiences[0]} or the token endpoint",
            "assertion_audience",
            cid,
        ) from None
    except InvalidIssuerError:
        raise _refuse(
            "client_assertion iss must be the client_id", "assertion_issuer", cid
        ) from None
    except MissingRequiredClaimError as exc:
        raise _refuse(
            f"client_assertion lacks the {exc.claim} claim (iss, sub, aud, exp, jti are required)",
            "assertion_claims",
            cid,
        ) from None
    except (DecodeError, PyJWTError):
        raise _refuse(
            "client_assertion is not a valid JWT; sign one as RFC 7523 section 3 says",
            "assertion_malformed",
            cid,
        ) from None
    return _check_claims(claims, cid, now, leeway)


def _check_claims(claims: dict[str, Any], cid: str, now: int, leeway: int) -> tuple[str, int]:
    if claims.get("sub") != cid:
        raise _refuse("client_assertion sub must be the client_id", "assertion_subject", cid)
    exp = claims["exp"]
    if type(exp) is not int:
        raise _refuse("client_assertion exp must be an integer", "assertion_claims", cid)
    if exp <= now:
        raise _refuse(
            "client_assertion has expired; sign a new one for each request",
            "assertion_expired",
            cid,
        )
    if exp > now + MAX_LIFETIME_SECONDS + leeway:
        raise _refuse(
            f"client_assertion exp is more than {MAX_LIFETIME_SECONDS} s ahead; "
            f"give it a lifetime of at most {MAX_LIFETIME_SECONDS} s",
            "assertion_lifetime",
            cid,
        )
    for name in ("iat", "nbf"):
        if name in claims:
            value = claims[name]
            if type(value) is not int:
                raise _refuse(
                    f"client_assertion {name} must be an integer", "assertion_claims", cid
                )
            if value > now + leeway:
                raise _refuse(
                    f"client_assertion {name} is in the future; check the client's clock",
                    "assertion_not_yet_valid",
                    cid,
                )
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_CHARS:
        raise _refuse(
            f"client_assertion jti must be a string of 1-{MAX_JTI_CHARS} characters",
            "assertion_claims",
            cid,
        )
    return jti, exp
