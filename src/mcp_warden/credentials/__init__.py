"""Credentials at rest: AES-256-GCM envelope, atomic store, rotation."""
