"""Helpers for the credential tests: fresh keys, CLI environments, the tutorial's store."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

from mcp_warden.demo.harness import cli_env

STORE = "mcp_credentials.enc"
LOG = "rotation_log.jsonl"


def new_master_key() -> str:
    """A fresh master key (64 hex characters); tests never share or commit keys."""
    return secrets.token_hex(32)


def cred_env(directory: Path, key: str, **extra: str) -> dict[str, str]:
    """A CLI environment whose store and log live in `directory`."""
    settings = {
        "MCP_ENCRYPTION_KEY": key,
        "MCP_CREDENTIALS_FILE": str(directory / STORE),
        "MCP_ROTATION_LOG": str(directory / LOG),
        "MCP_ACTOR": "tester@ci",
    }
    return cli_env(settings, **extra)


def tutorial_store_credential(path: Path, fernet_key: str, name: str, value: str) -> None:
    """The tutorial's Python variant `store_credential`, with its path and key as arguments."""
    cipher = Fernet(fernet_key.encode())
    creds = json.loads(path.read_text()) if path.exists() else {}
    creds[name] = cipher.encrypt(value.encode()).decode()
    path.write_text(json.dumps(creds, indent=2))
