"""Keys derived from the master key, and the HMACs made with them.

The rotation log and the entry bindings are authenticated with keys derived
from MCP_ENCRYPTION_KEY by HKDF-SHA256, one per purpose (the `info` string),
so only a holder of the master key can write them, and a key of one purpose
never authenticates the other. The master key itself is only ever used for
AES-GCM.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LOG_INFO = b"mcp-warden rotation-log v1"
BINDING_INFO = b"mcp-warden entry-binding v1"
_SIZE = 32


def derive(master_key: bytes, info: bytes) -> bytes:
    """The 32-byte key for `info` (a purpose) derived from the master key."""
    return HKDF(algorithm=hashes.SHA256(), length=_SIZE, salt=None, info=info).derive(master_key)


def mac(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of `data` under `key`, as 64 lowercase hex characters."""
    return hmac.digest(key, data, hashlib.sha256).hex()


def same(a: str, b: str) -> bool:
    """Compare two MACs in constant time."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))
