"""Import the store written by the tutorial's Python variant (Fernet).

That file is a JSON object ``{name: fernet_token}`` (``mcp_credentials.enc``,
the same default name as ours) under a Fernet key, which the tutorial kept in
MCP_ENCRYPTION_KEY; here it is read from MCP_FERNET_KEY. Every token is
decrypted first, so one bad token stops the import before anything is
written; then all values go into our store in one atomic write, each logged
as ``imported`` (a replaced value is kept as the previous value).
"""

from __future__ import annotations

import binascii
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mcp_warden.credentials import files
from mcp_warden.credentials.errors import CorruptStore, DecryptionFailed
from mcp_warden.credentials.rotation import Rotator
from mcp_warden.errors import ConfigError


def parse_fernet_key(text: str | None) -> Fernet:
    """A Fernet from MCP_FERNET_KEY, or a ConfigError that does not echo the key."""
    if text is None:
        raise ConfigError(
            "MCP_FERNET_KEY is not set; export the tutorial's Fernet key (the value its "
            "MCP_ENCRYPTION_KEY had) as MCP_FERNET_KEY"
        )
    try:
        return Fernet(text.encode("ascii"))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise ConfigError(
            "MCP_FERNET_KEY is not a Fernet key (44 url-safe base64 characters); "
            "use the key the tutorial's store was written with"
        ) from None


def read_fernet_store(path: Path, fernet: Fernet) -> dict[str, str]:
    """Every value of the tutorial's store, decrypted and checked (nothing written)."""
    entries = files.read_object(path)
    if entries is None:
        raise CorruptStore(f"{path} does not exist; give the path of the tutorial's store")
    values: dict[str, str] = {}
    for name, token in entries.items():
        if not isinstance(token, str):
            raise CorruptStore(f"entry {name!r} of {path} is not a Fernet token string")
        try:
            values[name] = fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionFailed(
                f"entry {name!r} of {path} does not decrypt with MCP_FERNET_KEY (a wrong key or "
                "a damaged token); nothing was imported"
            ) from None
    return values


def import_fernet(path: Path, fernet: Fernet, rotator: Rotator) -> list[str]:
    """Move every credential of the tutorial's store into ours; returns the names."""
    if path.resolve() == rotator.store.path.resolve():
        raise ConfigError(
            f"{path} is the credential store itself; move the tutorial's file aside first "
            "(for example to tutorial_credentials.json) and import from there"
        )
    return rotator.import_values(read_fernet_store(path, fernet))
