"""Errors of the credential store: one class per thing that can be wrong.

Every message names what is wrong (the file, the credential, the envelope
part) and what to do, in one line. No message ever contains a credential
value, a plaintext or a key.
"""

from __future__ import annotations

from mcp_warden.errors import WardenError


class CredentialError(WardenError):
    """Base class of every credential failure (exit code 1)."""

    reason = "credential_error"


class InvalidEnvelope(CredentialError):
    """An envelope (or the key handed to it) is malformed: says which part."""


class DecryptionFailed(CredentialError):
    """AES-GCM authentication failed: a wrong master key or a tampered value.

    GCM cannot tell these two apart, so messages always name both.
    """


class CredentialNotFound(CredentialError):
    """No credential of that name in the store (or no previous value to roll back to)."""

    reason = "no_credential"


class CorruptStore(CredentialError):
    """A store or sidecar file that is not what mcp-warden writes; it is never overwritten."""


class InvalidName(CredentialError):
    """A credential name outside the allowed characters (a usage error)."""

    exit_code = 2


class StoreBusy(CredentialError):
    """Another process held the store's lock for longer than the timeout."""


class RekeyPending(CredentialError):
    """An interrupted re-key must be finished before anything else writes the store."""


class RotationCheckFailed(CredentialError):
    """The pre-commit check of a new value failed; nothing was changed."""


class LogCorrupt(CredentialError):
    """The rotation log does not parse or its hash chain is broken."""


class BindingMismatch(CredentialError):
    """An entry holds an envelope mcp-warden bound to another name (or a kept previous value)."""
