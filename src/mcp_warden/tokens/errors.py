"""One exception type for every refused token, with a machine-readable reason."""

from __future__ import annotations

from typing import Literal

from mcp_warden.errors import WardenError

Reason = Literal[
    "malformed",  # not a compact JWS we accept: size, segments, base64url, JSON, header fields
    "bad_signature",  # signature does not verify under the key named by kid
    "unknown_key",  # kid not in the trusted JWKS (after at most one rate-limited reload)
    "wrong_type",  # typ is not at+jwt
    "unsupported_algorithm",  # alg is not EdDSA
    "missing_claim",  # a required claim is absent
    "invalid_claim",  # a claim has the wrong JSON type or an invalid value
    "expired",  # exp is in the past (beyond the leeway) or equal to now
    "not_yet_valid",  # nbf or iat in the future beyond the leeway
    "lifetime_too_long",  # exp - iat above the maximum TTL
    "wrong_audience",
    "wrong_issuer",
    "revoked",  # jti revoked, or every token of its sub issued before a revocation
    "revocation_unavailable",  # the denylist cannot be checked and its last view is too old
]


class TokenError(WardenError):
    """A token was refused. `reason` is stable for machines; the message is for people.

    The message never contains the token itself.
    """

    reason: Reason

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
