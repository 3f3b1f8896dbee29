"""The verified contents of an access token."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Claims:
    """Claims of a token whose signature, type and every check have passed.

    `tools` is the set of MCP tool names the token may list and call; there is
    no wildcard. `cnf_jkt` set: the token is sender-constrained (RFC 9449) and is
    accepted only with a DPoP proof by that key.
    """

    iss: str
    sub: str
    aud: str
    iat: int
    nbf: int | None
    exp: int
    jti: str
    tools: frozenset[str]
    kid: str
    cnf_jkt: str | None = None
    """The RFC 7638 thumbprint of the key a DPoP-bound token is bound to (`cnf.jkt`)."""

    def allows(self, tool: str) -> bool:
        """True when the token names `tool`."""
        return tool in self.tools

    def as_json(self) -> dict[str, object]:
        """The claims as a JSON-ready dict (tools sorted), for `token verify` and logs."""
        return {
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "jti": self.jti,
            "tools": sorted(self.tools),
            "kid": self.kid,
        } | ({"cnf": {"jkt": self.cnf_jkt}} if self.cnf_jkt is not None else {})
