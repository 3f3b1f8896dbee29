"""`Warden`: the security runtime a protected MCP server holds, without any tool of its own.

One object per server process, opened once from `Settings` and closed once:
the token verifier (JWKS, claims, cache), the revocation denylist (synced
from the shared store), the audit log (stderr by default) and, on first use,
the credential store (only a server that loads upstream credentials needs
MCP_ENCRYPTION_KEY). The product's own Scavio server is a user of it, like
anyone's `MCPServer` or FastMCP server.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

from mcp_warden.config import Settings
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.server.audit import AuditLog
from mcp_warden.tokens.revocation import Denylist, open_denylist
from mcp_warden.tokens.verifier import Verifier


class Warden:
    """The verifier, denylist, audit log and credential store of one server process."""

    def __init__(
        self,
        settings: Settings,
        *,
        verifier: Verifier,
        denylist: Denylist,
        audit: AuditLog,
        store: CredentialStore | None = None,
    ) -> None:
        """Prefer `Warden.open(settings)`; this form takes parts built elsewhere (tests)."""
        self.settings = settings
        self.verifier = verifier
        self.denylist = denylist
        self.audit = audit
        self._store = store
        self._store_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings | None = None) -> Warden:
        """Open every part from `settings` (default: the environment).

        Raises ConfigError (or another WardenError) naming what is missing; on
        failure, what was already opened is closed again.
        """
        settings = Settings.from_env() if settings is None else settings
        with contextlib.ExitStack() as undo:
            denylist = open_denylist(settings)
            undo.callback(denylist.close)
            verifier = Verifier.from_settings(settings, denylist)
            undo.callback(verifier.close)
            audit = AuditLog.open(settings.audit_log)
            undo.pop_all()
        return cls(settings, verifier=verifier, denylist=denylist, audit=audit)

    @property
    def store(self) -> CredentialStore:
        """The credential store, opened on first use (ConfigError without MCP_ENCRYPTION_KEY)."""
        with self._store_lock:
            if self._store is None:
                self._store = CredentialStore.from_settings(self.settings)
            return self._store

    def credential(self, name: str) -> str:
        """The plaintext of credential `name`, loaded just-in-time for one upstream call.

        Keep it in a local variable for that call only; the store keeps no plaintext.
        """
        return self.store.load(name)

    def close(self) -> None:
        """Stop the denylist sync and release the JWKS source and the audit log."""
        try:
            self.verifier.close()
        finally:
            try:
                self.denylist.close()
            finally:
                self.audit.close()

    def __enter__(self) -> Warden:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
