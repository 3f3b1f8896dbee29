"""The root of every error mcp-warden raises on purpose, and the tree below it.

    WardenError                 exit 1: a check failed
    |-- ConfigError             exit 2: a missing or malformed setting
    |-- TokenError              tokens/errors.py: a refused token; `reason` names the check
    |-- Refusal                 server/grants.py: a request without a usable grant
    |-- CredentialError         credentials/errors.py: the store, one subclass per fault:
    |   |-- InvalidEnvelope, DecryptionFailed, CredentialNotFound, CorruptStore,
    |   |-- InvalidName (exit 2), StoreBusy, RekeyPending, RotationCheckFailed,
    |   `-- LogCorrupt, BindingMismatch
    |-- KeysError               tokens/keys.py: a refused signing-key operation
    |-- MintError               tokens/issuer.py: a token we will not sign (exit 2)
    |-- RevocationStoreError    tokens/revocation/store.py: the shared denylist failed
    |   `-- RevocationUnconfirmed  written, but not on the replicas MCP_REDIS_WAIT_REPLICAS asks
    |-- DpopError               tokens/dpop.py: a refused DPoP proof; `reason` names the check
    |-- ApiKeyCheckError        scavio/verify.py: a candidate key Scavio refused
    |-- ScavioError             scavio/errors.py: a failed upstream call; `reason` says how
    |   |-- InvalidArgument     scavio/errors.py: a tool argument out of range
    |   `-- ScavioToolError     server/tools/scavio.py: a ScavioError as the SDK's
    |                           ToolError, so a client sees it as a tool error
    |-- ClientsError            issuer/clients.py: a client registry request refused (exit 2)
    |   `-- UnknownClient       issuer/registry: no client has this client_id
    |-- RegistryUnavailable     issuer/registry: the client registry's store is unreachable
    |   `-- RegistryUnconfirmed  a change made, but not on the replicas it must reach
    |-- DemoFailed              demo/flow.py: a demo step that did not do what it should
    `-- NotReady                demo/harness.py: a process that stopped or stayed silent

Each error carries the exit code the CLI uses for it, and `reason`: a stable
word for machines (the audit line of a failed tool call, a refused token),
declared on the class and narrowed by a subclass or set per instance. Its
message is one line that says what is wrong and what to do, for people, and
never includes a secret.
"""

from __future__ import annotations

from typing import ClassVar


class WardenError(Exception):
    """Base class: a failure the user can act on (exit code 1: a check failed)."""

    exit_code: ClassVar[int] = 1
    reason: str = "error"
    """A stable word for machines; subclasses narrow it, some set it per instance."""


class ConfigError(WardenError):
    """A missing or malformed setting (exit code 2: usage or configuration)."""

    exit_code = 2
    reason = "config_error"
