"""Both directions through real Node 20 `crypto`, running the tutorial's own encrypt/decrypt."""

from __future__ import annotations

import json
from pathlib import Path

from mcp_warden.credentials.store import CredentialStore
from tests.support.credentials import STORE, cred_env, new_key
from tests.support.procs import run_cli, run_node

VALUES = {
    "scavio_api_key": "sk-live-0123456789abcdef",
    "accents": "clé secrète à Zürich, 鍵🔑 ключ",
    "empty": "",
    "long": "  padded: with ; and : inside  " + "x" * 5000,
}


def test_node_writes_and_mcp_warden_reads(tmp_path: Path) -> None:
    key = new_key()
    env = cred_env(tmp_path, key)
    store = tmp_path / STORE
    written = run_node("envelope.mjs", ["write", str(store)], env=env, input=json.dumps(VALUES))
    assert written.returncode == 0, written.stderr
    for name, value in VALUES.items():
        got = run_cli(["cred", "get", name], env)
        assert got.returncode == 0, got.stderr
        assert got.stdout == value + "\n", name
    direct = CredentialStore(store, bytes.fromhex(key))
    assert {name: direct.load(name) for name in VALUES} == VALUES


def test_mcp_warden_writes_and_node_reads(tmp_path: Path) -> None:
    key = new_key()
    env = cred_env(tmp_path, key)
    for name, value in VALUES.items():
        done = run_cli(["cred", "set", name], env, input=value + "\n")
        assert done.returncode == 0, done.stderr
    # a rotation and a rollback leave a file Node still reads
    assert run_cli(["cred", "rotate", "accents"], env, input="tmp\n").returncode == 0
    assert run_cli(["cred", "rollback", "accents"], env).returncode == 0
    read = run_node(
        "envelope.mjs", ["read", str(tmp_path / STORE)], env=env, input=json.dumps(list(VALUES))
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == VALUES


def test_node_reads_the_store_after_a_rekey(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    env = cred_env(tmp_path, old, MCP_NEW_ENCRYPTION_KEY=new)
    assert run_cli(["cred", "set", "k"], env, input="before rekey ✓\n").returncode == 0
    done = run_cli(["cred", "rekey"], env)
    assert done.returncode == 0, done.stderr
    read = run_node(
        "envelope.mjs",
        ["read", str(tmp_path / STORE)],
        env=cred_env(tmp_path, new),
        input='["k"]',
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == {"k": "before rekey ✓"}
