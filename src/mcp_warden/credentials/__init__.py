"""Credentials at rest: AES-256-GCM envelope, atomic store, rotation.

- `envelope`: the ``iv:tag:ciphertext`` hex format shared with Node, and key parsing.
- `store`: `CredentialStore` (``from_settings``, ``load`` per request, set/get/delete/names).
- `rotation`: `Rotator` (logged set/rotate/rollback/delete/import, previous values, ages).
- `auditlog`: `RotationLog`, the hash-chained, keyed (HMAC) JSON-lines log.
- `bindings`: the keyed MAC of each (name, envelope) pair, in a file beside the store.
- `keyed`: the HKDF keys (log, bindings) derived from the master key, and HMACs.
- `rekey`: re-encryption under a new master key, resumable after a crash.
- `fernet_import`: migration from the tutorial's Fernet store.
- `files`: atomic writes, strict JSON reads, no-follow opens, the writers' lock.
- `errors`: one class per concern.
"""
