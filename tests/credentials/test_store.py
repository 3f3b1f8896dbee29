"""The store: atomic 0600 writes, strict reads, named errors, the just-in-time `load`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from filelock import FileLock

from mcp_warden.config import Settings
from mcp_warden.credentials import files
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.envelope import Envelope, decrypt, encrypt
from mcp_warden.credentials.errors import (
    CorruptStore,
    CredentialNotFound,
    DecryptionFailed,
    InvalidEnvelope,
    InvalidName,
    RekeyPending,
    StoreBusy,
)
from mcp_warden.credentials.rekey import rekey
from mcp_warden.credentials.store import CredentialStore, rekey_journal
from mcp_warden.demo.harness import run_cli
from mcp_warden.errors import ConfigError
from tests.support.credentials import cred_env, new_master_key


@pytest.fixture
def key() -> str:
    return new_master_key()


@pytest.fixture
def store(tmp_path: Path, key: str) -> CredentialStore:
    return CredentialStore(tmp_path / "mcp_credentials.enc", bytes.fromhex(key))


def raw(store: CredentialStore) -> dict[str, object]:
    result = json.loads(store.path.read_text())
    assert isinstance(result, dict)
    return result


def tamper(store: CredentialStore, name: str) -> str:
    """Flip one bit of `name`'s ciphertext in the file; returns the new envelope text."""
    entries = raw(store)
    envelope = Envelope.parse(str(entries[name]))
    tag = bytearray(envelope.tag)
    tag[0] ^= 1
    entries[name] = str(dataclasses.replace(envelope, tag=bytes(tag)))
    store.path.write_text(json.dumps(entries, indent=2))
    return str(entries[name])


def test_set_get_names_delete(store: CredentialStore) -> None:
    store.set("a", "alpha")
    store.set("b", "ünïcode ✓")
    store.set("empty", "")
    assert store.get("a") == "alpha"
    assert store.load("b") == "ünïcode ✓"
    assert store.load("empty") == ""
    assert store.names() == ["a", "b", "empty"]
    store.delete("a")
    assert store.names() == ["b", "empty"]
    with pytest.raises(CredentialNotFound, match="'a'"):
        store.load("a")
    with pytest.raises(CredentialNotFound):
        store.delete("a")


def test_file_is_the_design_format(store: CredentialStore, key: str) -> None:
    store.set("scavio_api_key", "sk-1")
    entries = raw(store)
    assert list(entries) == ["scavio_api_key"]
    assert decrypt(str(entries["scavio_api_key"]), bytes.fromhex(key)) == b"sk-1"


def test_missing_file_is_an_empty_store(store: CredentialStore) -> None:
    assert store.names() == []
    with pytest.raises(CredentialNotFound, match="cred set x"):
        store.load("x")


def test_from_settings_needs_a_valid_key(tmp_path: Path, key: str) -> None:
    path = tmp_path / "s.enc"
    store = CredentialStore.from_settings(Settings(encryption_key=key, credentials_file=path))
    assert store.path == path
    with pytest.raises(ConfigError, match="MCP_ENCRYPTION_KEY is not set"):
        CredentialStore.from_settings(Settings(credentials_file=path))
    with pytest.raises(ConfigError, match="64 hex"):
        CredentialStore.from_settings(Settings(encryption_key="abc", credentials_file=path))


def test_new_file_is_0600_and_replaced_files_too(store: CredentialStore) -> None:
    store.set("a", "1")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    os.chmod(store.path, 0o644)
    store.set("a", "2")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    lock = store.path.with_name(store.path.name + ".lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_group_readable_file_is_warned_about(
    store: CredentialStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.set("a", "1")
    os.chmod(store.path, 0o640)
    with caplog.at_level(logging.WARNING, logger="mcp_warden.credentials"):
        assert store.load("a") == "1"
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_invalid_names_are_refused(store: CredentialStore) -> None:
    for name in ["", "a b", "../x", "-x", "x" * 129, "naïve", "a\nb"]:
        with pytest.raises(InvalidName):
            store.set(name, "v")
    assert not store.path.exists()


def test_corrupt_json_names_the_file_and_is_never_overwritten(store: CredentialStore) -> None:
    store.path.write_text('{"a": "00:00:00",')
    before = store.path.read_bytes()
    with pytest.raises(CorruptStore, match=rf"{store.path.name} is not valid JSON.*backup"):
        store.load("a")
    with pytest.raises(CorruptStore):
        store.set("b", "v")
    with pytest.raises(CorruptStore):
        store.delete("a")
    assert store.path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'["not", "an", "object"]', "not an object"),
        (b'{"a": "x", "a": "y"}', "'a' twice"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_other_corrupt_files(store: CredentialStore, content: bytes, message: str) -> None:
    store.path.write_bytes(content)
    with pytest.raises(CorruptStore, match=message):
        store.names()
    with pytest.raises(CorruptStore):
        store.set("b", "v")
    assert store.path.read_bytes() == content


def test_tampered_entry_is_named_while_others_load(store: CredentialStore) -> None:
    store.set("a", "alpha")
    store.set("b", "beta")
    store.set("c", "gamma")
    bad = tamper(store, "b")
    with pytest.raises(DecryptionFailed, match=r"'b'.*tampered.*cannot tell which"):
        store.load("b")
    assert store.load("a") == "alpha"
    assert store.load("c") == "gamma"
    store.set("d", "delta")
    store.set("a", "alpha2")
    assert raw(store)["b"] == bad
    assert store.load("a") == "alpha2"


def test_malformed_and_non_string_entries_are_named(store: CredentialStore, key: str) -> None:
    good = encrypt(b"fine", bytes.fromhex(key))
    store.path.write_text(json.dumps({"good": good, "short": good[:-40], "num": 5}))
    with pytest.raises(InvalidEnvelope, match=r"credential 'short'.*"):
        store.load("short")
    with pytest.raises(InvalidEnvelope, match=r"'num'.*JSON int"):
        store.load("num")
    assert store.load("good") == "fine"
    store.set("new", "n")
    entries = raw(store)
    assert entries["short"] == good[:-40]
    assert entries["num"] == 5


def test_non_utf8_plaintext_is_named(store: CredentialStore, key: str) -> None:
    store.path.write_text(json.dumps({"bin": encrypt(b"\xff\xfe", bytes.fromhex(key))}))
    with pytest.raises(CorruptStore, match=r"'bin'.*not UTF-8"):
        store.load("bin")


def test_a_wrong_key_never_writes_a_mix_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "s.enc"
    right = CredentialStore(path, bytes.fromhex(new_master_key()))
    right.set("a", "1")
    wrong = CredentialStore(path, bytes.fromhex(new_master_key()))
    before = path.read_bytes()
    with pytest.raises(DecryptionFailed, match="none of the 1 entries"):
        wrong.set("b", "2")
    with pytest.raises(DecryptionFailed):
        wrong.delete("a")
    assert path.read_bytes() == before


def test_writes_wait_for_an_interrupted_rekey(store: CredentialStore) -> None:
    store.set("a", "1")
    rekey_journal(store.path).write_text("{}")
    with pytest.raises(RekeyPending, match="cred rekey"):
        store.set("b", "2")
    assert store.load("a") == "1"


def test_temporary_files_of_killed_writers_are_removed(store: CredentialStore) -> None:
    store.set("a", "1")
    stale = store.path.parent / f".{store.path.name}.abcd1234.tmp"
    stale.write_text("old ciphertext")
    other = store.path.parent / "unrelated.tmp"
    other.write_text("keep")
    store.set("b", "2")
    assert not stale.exists()
    assert other.exists()


def test_load_does_not_reread_an_unchanged_file(
    store: CredentialStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set("a", "alpha")
    assert store.load("a") == "alpha"
    reads: list[Path] = []
    real = files.read_snapshot

    def counting(path: Path) -> tuple[files.Signature, bytes] | None:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(files, "read_snapshot", counting)
    for _ in range(100):
        assert store.load("a") == "alpha"
    assert reads == []
    store.set("a", "alpha2")  # the writer reads the file under its lock
    reads.clear()
    assert store.load("a") == "alpha2"
    assert store.load("a") == "alpha2"
    assert reads == [store.bindings_path, store.path]  # each once: bindings, then the store


def test_load_sees_every_same_size_replacement(tmp_path: Path, key: str) -> None:
    """Back-to-back writes of equal size (same coarse clock tick) are never missed."""
    path = tmp_path / "s.enc"
    writer = CredentialStore(path, bytes.fromhex(key))
    reader = CredentialStore(path, bytes.fromhex(key))
    for i in range(60):
        writer.set("a", f"value-{i:03d}")
        assert reader.load("a") == f"value-{i:03d}"


def test_load_keeps_no_plaintext(store: CredentialStore) -> None:
    secret = "sk-live-plaintext-marker"
    store.set("a", secret)
    store.set("b", "other")
    assert store.load("a") == secret
    assert store.load("b") == "other"
    seen: list[object] = []

    def walk(obj: object, depth: int = 0) -> None:
        seen.append(obj)
        if depth > 6:
            return
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, depth + 1)
                walk(v, depth + 1)
        elif isinstance(obj, list | tuple | set):
            for item in obj:
                walk(item, depth + 1)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name), depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            walk(vars(obj), depth + 1)

    walk(store)
    assert any(isinstance(o, Envelope) for o in seen)  # the walk reached the cache
    for obj in seen:
        if isinstance(obj, str | bytes):
            marker = secret if isinstance(obj, str) else secret.encode()
            assert marker not in obj  # type: ignore[operator]


@pytest.mark.slow
def test_load_picks_up_a_rotation_by_another_process(tmp_path: Path, key: str) -> None:
    """A long-lived reader (the server) sees a CLI rotation on its next call, no restart."""
    env = cred_env(tmp_path, key)
    assert run_cli(["cred", "set", "scavio_api_key"], env, input="sk-old\n").returncode == 0
    server_side = CredentialStore(tmp_path / "mcp_credentials.enc", bytes.fromhex(key))
    assert server_side.load("scavio_api_key") == "sk-old"
    done = run_cli(["cred", "rotate", "scavio_api_key"], env, input="sk-new\n")
    assert done.returncode == 0, done.stderr
    assert server_side.load("scavio_api_key") == "sk-new"


def test_lock_times_out_with_a_clear_error(store: CredentialStore) -> None:
    quick = CredentialStore(store.path, b"\x00" * 32, lock_timeout=0.2)
    holder = FileLock(store.path.with_name(store.path.name + ".lock"), thread_local=False)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder:
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        held.wait(5)
        with pytest.raises(StoreBusy, match="retry"):
            quick.set("a", "1")
    finally:
        release.set()
        thread.join()


def test_a_fernet_store_gets_the_import_hint(store: CredentialStore) -> None:
    from cryptography.fernet import Fernet

    token = Fernet(Fernet.generate_key()).encrypt(b"v").decode()
    store.path.write_text(json.dumps({"k": token}))
    with pytest.raises(InvalidEnvelope, match="import-fernet"):
        store.load("k")


def test_next_key_lets_readers_cross_a_rekey_but_never_writes(tmp_path: Path, key: str) -> None:
    """A server given MCP_NEW_ENCRYPTION_KEY reads the store before and after `cred rekey`."""
    path = tmp_path / "mcp_credentials.enc"
    new = new_master_key()
    CredentialStore(path, bytes.fromhex(key)).set("api", "before")
    both = CredentialStore.from_settings(
        Settings.from_env(
            {
                "MCP_ENCRYPTION_KEY": key,
                "MCP_NEW_ENCRYPTION_KEY": new,
                "MCP_CREDENTIALS_FILE": str(path),
            }
        )
    )
    assert both.load("api") == "before"
    rekey(path, bytes.fromhex(key), bytes.fromhex(new), RotationLog(tmp_path / "log", "t"))
    assert both.load("api") == "before"  # now under the new key
    assert CredentialStore(path, bytes.fromhex(new)).load("api") == "before"
    with pytest.raises(DecryptionFailed, match="MCP_ENCRYPTION_KEY is not the key"):
        CredentialStore(path, bytes.fromhex(key)).load("api")
    # Writes use MCP_ENCRYPTION_KEY only: no old-key entry lands in a re-keyed store.
    with pytest.raises(DecryptionFailed, match="nothing was written"):
        both.set("other", "value")
    assert set(raw(both)) == {"api"}
    tamper(both, "api")
    with pytest.raises(DecryptionFailed, match="neither MCP_ENCRYPTION_KEY nor MCP_NEW_"):
        both.load("api")
