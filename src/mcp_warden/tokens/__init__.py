"""Scoped tokens: Ed25519 keys and JWKS, issuer, verifier, revocation."""
