"""Both directions through real Node 20 `crypto`, running the tutorial's own encrypt/decrypt."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import run_cli
from tests.support.credentials import STORE, cred_env, new_master_key
from tests.support.procs import run_node

pytestmark = pytest.mark.slow

VALUES = {
    "scavio_api_key": "sk-live-0123456789abcdef",
    "accents": "clé secrète à Zürich, 鍵🔑 ключ",
    "empty": "",
    "long": "  padded: with ; and : inside  " + "x" * 5000,
}


def test_node_writes_and_mcp_warden_reads(tmp_path: Path) -> None:
    key = new_master_key()
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
    key = new_master_key()
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
    old, new = new_master_key(), new_master_key()
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


def test_an_entry_node_adds_or_replaces_stays_readable_warned_once_and_bound_by_the_next_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_master_key()
    env = cred_env(tmp_path, key)
    store = tmp_path / STORE
    assert run_cli(["cred", "set", "ours"], env, input="written by mcp-warden\n").returncode == 0
    # A Node service writes into the same JSON with the tutorial's encrypt(): one new entry,
    # and a new value for ours.
    added = run_node(
        "envelope.mjs",
        ["add", str(store)],
        env=env,
        input=json.dumps({"from_node": "sk-node-é", "ours": "replaced by node"}),
    )
    assert added.returncode == 0, added.stderr

    for name, value in (("from_node", "sk-node-é"), ("ours", "replaced by node")):
        got = run_cli(["cred", "get", name], env)
        assert got.returncode == 0, got.stderr
        assert got.stdout == value + "\n"
        assert f"credential {name!r}" in got.stderr
        assert "is not bound" in got.stderr
        assert "cred verify --bind" in got.stderr
    server = CredentialStore(store, bytes.fromhex(key))  # the just-in-time path, warned once
    with caplog.at_level(logging.WARNING, logger="mcp_warden.credentials"):
        for _ in range(3):
            assert server.load("from_node") == "sk-node-é"
    assert caplog.text.count("'from_node'") == 1
    listing = run_cli(["cred", "verify"], env)
    assert listing.returncode == 0, listing.stderr
    assert "from_node: unbound" in listing.stdout
    assert "2 entries are not bound" in listing.stderr

    # The next mcp-warden write binds both, and logs that it did.
    assert run_cli(["cred", "set", "another"], env, input="x\n").returncode == 0
    for name in ("from_node", "ours"):
        got = run_cli(["cred", "get", name], env)
        assert got.returncode == 0, got.stderr
        assert got.stderr == ""
    log = run_cli(["cred", "log"], env).stdout
    assert "bound         from_node" in log
    assert "bound         ours" in log
    verified = run_cli(["cred", "verify"], env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
    # Node still reads everything mcp-warden wrote around its entries.
    read = run_node(
        "envelope.mjs", ["read", str(store)], env=env, input='["from_node", "ours", "another"]'
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == {
        "from_node": "sk-node-é",
        "ours": "replaced by node",
        "another": "x",
    }


def test_cred_verify_bind_binds_what_node_wrote_and_logs_it(tmp_path: Path) -> None:
    key = new_master_key()
    env = cred_env(tmp_path, key)
    store = tmp_path / STORE
    written = run_node("envelope.mjs", ["write", str(store)], env=env, input='{"k": "v"}')
    assert written.returncode == 0, written.stderr
    bound = run_cli(["cred", "verify", "--bind"], env)
    assert bound.returncode == 0, bound.stderr
    assert "k: bound now" in bound.stdout
    assert "k: ok" in bound.stdout
    assert run_cli(["cred", "get", "k"], env).stderr == ""
    assert "bound         k  by tester@ci" in run_cli(["cred", "log"], env).stdout
    assert "1 lines verified" in run_cli(["cred", "log", "--verify"], env).stdout
