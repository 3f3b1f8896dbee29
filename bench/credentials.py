"""Credentials: the just-in-time `load(name)` beside the tutorial's `load_credential`.

The baseline is the tutorial's Python variant, re-created here: every call
builds a Fernet from the key, reads the file, parses the JSON and decrypts.
Both stores hold the same 11 credentials; both run in this process, same run.

Our `load` includes the entry-binding check (issue 8): with the store
unchanged it is a cached verdict; on a new or just-rotated file it also
reads and parses the bindings file, derives the binding key (a new store
object) and computes one HMAC.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

from bench.common import Figure, per_call_us
from mcp_warden.credentials.envelope import generate_key, parse_key
from mcp_warden.credentials.store import CredentialStore

SECTION = "credentials"
BASELINE = "tutorial load_credential (Fernet; file read + JSON parse per call)"
NAME = "scavio_api_key"


class TutorialStore:
    """The tutorial's Python variant (store_credential / load_credential), path and key explicit."""

    def __init__(self, path: Path, fernet_key: str) -> None:
        self.path = path
        self.fernet_key = fernet_key

    def store_credential(self, name: str, value: str) -> None:
        cipher = Fernet(self.fernet_key.encode())
        creds = json.loads(self.path.read_text()) if self.path.exists() else {}
        creds[name] = cipher.encrypt(value.encode()).decode()
        self.path.write_text(json.dumps(creds, indent=2))

    def load_credential(self, name: str) -> str:
        cipher = Fernet(self.fernet_key.encode())
        creds = json.loads(self.path.read_text())
        return cipher.decrypt(creds[name].encode()).decode()


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        key = parse_key(generate_key())
        ours = CredentialStore(directory / "mcp_credentials.enc", key)
        tutorial = TutorialStore(directory / "tutorial.enc", Fernet.generate_key().decode())
        for name in [NAME, *(f"other_{i}" for i in range(10))]:
            value = "sk-" + secrets.token_hex(24)
            ours.set(name, value)
            tutorial.store_credential(name, value)

        reader = CredentialStore(ours.path, key)  # a server's long-lived store
        assert reader.load(NAME) == tutorial.load_credential(NAME)
        baseline = per_call_us(lambda: tutorial.load_credential(NAME), number=3000)
        warm = per_call_us(lambda: reader.load(NAME), number=3000)
        cold = per_call_us(lambda: CredentialStore(ours.path, key).load(NAME), number=1000)
        base_set = per_call_us(lambda: tutorial.store_credential(NAME, "sk-new"), number=200)
        our_set = per_call_us(lambda: ours.set(NAME, "sk-new"), number=200)

    return [
        Figure(SECTION, "load(name), file unchanged (per request)", warm, "us", BASELINE, baseline,
               "<= 0.3x"),
        Figure(SECTION, "load(name) on a new or just-rotated file (read + parse)", cold, "us",
               BASELINE, baseline),
        Figure(SECTION, "set(name): locked, atomic rename, fsync", our_set, "us",
               "tutorial store_credential (no lock, no fsync)", base_set,
               "none: durability costs"),
    ]  # fmt: skip
