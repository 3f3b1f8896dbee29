"""Tests for scoped tokens: keys, issuer, verifier, CLI, Node interop."""
