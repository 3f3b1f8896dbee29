"""Rotation: previous values, rollback, the hash-chained log, ages, re-key, Fernet import."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mcp_warden.config import Settings
from mcp_warden.credentials import files, rekey
from mcp_warden.credentials.auditlog import GENESIS, RotationLog
from mcp_warden.credentials.bindings import bindings_path
from mcp_warden.credentials.envelope import decrypt
from mcp_warden.credentials.errors import (
    CredentialNotFound,
    DecryptionFailed,
    LogCorrupt,
    RekeyPending,
    RotationCheckFailed,
)
from mcp_warden.credentials.fernet_import import import_fernet, parse_fernet_key
from mcp_warden.credentials.rotation import Rotator
from mcp_warden.credentials.store import CredentialStore, previous_path, rekey_journal
from mcp_warden.errors import ConfigError
from tests.support.clock import FakeClock
from tests.support.credentials import new_master_key, tutorial_store_credential

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0.timestamp())


@pytest.fixture
def key() -> bytes:
    return bytes.fromhex(new_master_key())


@pytest.fixture
def rotator(tmp_path: Path, key: bytes, clock: FakeClock) -> Rotator:
    store = CredentialStore(tmp_path / "mcp_credentials.enc", key)
    log = RotationLog(tmp_path / "rotation_log.jsonl", "tester", key=key, clock=clock.utc)
    return Rotator(store, log)


def entries(path: Path) -> dict[str, object]:
    return files.read_object(path) or {}


def flip_last_digit(envelope: str) -> str:
    """The envelope with one bit of its last ciphertext byte flipped (still well-formed)."""
    return envelope[:-1] + format(int(envelope[-1], 16) ^ 1, "x")


def actions(rotator: Rotator) -> list[tuple[str, str]]:
    return [(e.action, e.credential) for e in rotator.log.events()]


def test_set_rotate_keep_the_previous_value_beside_the_store(rotator: Rotator, key: bytes) -> None:
    assert rotator.set("k", "v1") == "created"
    assert not previous_path(rotator.store.path).exists()
    assert rotator.set("k", "v2") == "rotated"
    rotator.rotate("k", "v3")
    assert rotator.store.load("k") == "v3"
    kept = entries(previous_path(rotator.store.path))
    assert decrypt(str(kept["k"]), key) == b"v2"
    assert list(entries(rotator.store.path)) == ["k"]  # nothing else inside the store
    assert actions(rotator) == [("created", "k"), ("rotated", "k"), ("rotated", "k")]


def test_rollback_swaps_with_the_previous_value(rotator: Rotator) -> None:
    rotator.set("k", "good")
    rotator.rotate("k", "bad")
    rotator.rollback("k")
    assert rotator.store.load("k") == "good"
    rotator.rollback("k")  # a second rollback redoes
    assert rotator.store.load("k") == "bad"
    assert actions(rotator)[-2:] == [("rolled_back", "k"), ("rolled_back", "k")]


def test_rollback_without_a_previous_value_says_so(rotator: Rotator) -> None:
    rotator.set("k", "only")
    with pytest.raises(CredentialNotFound, match="no previous value of 'k'"):
        rotator.rollback("k")
    assert rotator.store.load("k") == "only"


def test_delete_keeps_the_value_so_rollback_restores_it(rotator: Rotator) -> None:
    rotator.set("k", "v1")
    rotator.delete("k")
    assert rotator.store.names() == []
    rotator.rollback("k")
    assert rotator.store.load("k") == "v1"
    with pytest.raises(CredentialNotFound):
        rotator.rollback("k")  # nothing left to swap with
    assert [a for a, _ in actions(rotator)] == ["created", "deleted", "rolled_back"]


def test_a_tampered_previous_value_is_not_restored(rotator: Rotator) -> None:
    rotator.set("k", "v1")
    rotator.rotate("k", "v2")
    prev = previous_path(rotator.store.path)
    data = entries(prev)
    data["k"] = flip_last_digit(str(data["k"]))
    prev.write_text(json.dumps(data))
    with pytest.raises(DecryptionFailed, match=r"'k' in .*\.previous"):
        rotator.rollback("k")
    assert rotator.store.load("k") == "v2"


def test_rotate_runs_the_check_first_and_logs_a_failure(rotator: Rotator) -> None:
    rotator.set("k", "v1")
    seen: list[str] = []

    def refuse(value: str) -> None:
        seen.append(value)
        raise RuntimeError("upstream said 401 for " + value)

    with pytest.raises(RotationCheckFailed, match=r"'k' failed its check \(RuntimeError\)") as e:
        rotator.rotate("k", "v2", check=refuse)
    assert "v2" not in str(e.value)
    assert seen == ["v2"]
    assert rotator.store.load("k") == "v1"
    assert actions(rotator)[-1] == ("rotate_failed", "k")
    rotator.rotate("k", "v3", check=seen.append)
    assert rotator.store.load("k") == "v3"
    assert seen == ["v2", "v3"]


def test_rotate_needs_an_existing_credential(rotator: Rotator) -> None:
    called: list[str] = []
    with pytest.raises(CredentialNotFound):
        rotator.rotate("nope", "v", check=called.append)
    assert called == []


def test_ages_and_due_follow_the_values(rotator: Rotator, clock: FakeClock) -> None:
    rotator.set("old", "a1")
    clock.now = (T0 + timedelta(days=20)).timestamp()
    rotator.set("new", "b1")
    rotator.rotate("old", "a2")
    now = T0 + timedelta(days=45)
    ages = {a.name: a for a in rotator.ages()}
    assert ages["old"].set_at == T0 + timedelta(days=20)
    assert not rotator.due("old", 30, now)
    assert rotator.due("old", 25, now)
    clock.now = (T0 + timedelta(days=44)).timestamp()
    rotator.rollback("old")  # back to the value set at T0
    assert rotator.due("old", 30, now)
    assert {a.name: a.set_at for a in rotator.ages()}["old"] == T0
    with pytest.raises(CredentialNotFound):
        rotator.due("missing", 30, now)


def test_a_credential_the_log_does_not_know_is_due(rotator: Rotator) -> None:
    rotator.store.set("outside", "written without the log")
    assert rotator.due("outside", 30, T0)
    assert [a.set_at for a in rotator.ages()] == [None]


def test_log_lines_are_hash_chained(rotator: Rotator, key: bytes) -> None:
    rotator.set("a", "1")
    rotator.set("b", "2")
    lines = rotator.log.path.read_bytes().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["prev"] == GENESIS

    assert second["prev"] == hashlib.sha256(lines[0]).hexdigest()
    assert list(first) == ["time", "credential", "action", "actor", "prev", "mac"]
    log_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"mcp-warden rotation-log v1").derive(key)
    for line, record in zip(lines, (first, second), strict=True):
        body = line[: line.index(b',"mac":')] + b"}"  # the line up to `prev`
        assert record["mac"] == hmac.new(log_key, body, "sha256").hexdigest()
    assert first["actor"] == "tester"
    assert first["time"] == "2026-01-01T00:00:00.000000Z"
    summary = rotator.log.verify()
    assert summary.lines == 2
    assert summary.head == hashlib.sha256(lines[1]).hexdigest()


@pytest.fixture
def logged(rotator: Rotator) -> RotationLog:
    for name in "abcde":
        rotator.set(name, name)
    rotator.log.verify()
    return rotator.log


def _rewrite(log: RotationLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_verify_finds_an_edited_line(logged: RotationLog) -> None:
    lines = logged.path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"created"', b'"rotated"')
    _rewrite(logged, lines)
    with pytest.raises(LogCorrupt, match=r"line 3 .* does not chain to line 2"):
        logged.verify()


def test_verify_finds_reordered_lines(logged: RotationLog) -> None:
    lines = logged.path.read_bytes().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    _rewrite(logged, lines)
    with pytest.raises(LogCorrupt, match="line 3 "):
        logged.verify()


@pytest.mark.parametrize("index", [0, 2])
def test_verify_finds_a_deleted_line(logged: RotationLog, index: int) -> None:
    lines = logged.path.read_bytes().splitlines()
    del lines[index]
    _rewrite(logged, lines)
    with pytest.raises(LogCorrupt, match=f"line {index + 1} "):
        logged.verify()


def test_verify_finds_a_line_that_is_not_an_event(logged: RotationLog) -> None:
    lines = logged.path.read_bytes().splitlines()
    lines[1] = b'{"hello": "world"}'
    _rewrite(logged, lines)
    with pytest.raises(LogCorrupt, match="line 2 does not have exactly the fields"):
        logged.verify()
    lines[1] = b"not json"
    _rewrite(logged, lines)
    with pytest.raises(LogCorrupt, match="line 2 is not valid JSON"):
        logged.events()


def test_an_incomplete_last_line_is_cut_off_by_the_next_append(
    rotator: Rotator, logged: RotationLog
) -> None:
    with logged.path.open("ab") as file:
        file.write(b'{"time":"2026-01-01T00:00:00.000000Z","cred')
    assert logged.verify().lines == 5
    rotator.set("f", "f")
    assert logged.verify().lines == 6
    assert logged.events()[-1].credential == "f"


def test_rekey_moves_store_and_previous_values_to_the_new_key(rotator: Rotator, key: bytes) -> None:
    rotator.set("a", "a1")
    rotator.rotate("a", "a2")
    rotator.set("b", "b1")
    new = bytes.fromhex(new_master_key())
    result = rekey.rekey(rotator.store.path, key, new, rotator.log)
    assert (result.credentials, result.previous, result.resumed) == (2, 1, False)
    assert CredentialStore(rotator.store.path, new).load("a") == "a2"
    assert decrypt(str(entries(previous_path(rotator.store.path))["a"]), new) == b"a1"
    with pytest.raises(DecryptionFailed):
        rotator.store.load("a")
    assert actions(rotator)[-2:] == [("rekeyed", "a"), ("rekeyed", "b")]
    assert not rekey_journal(rotator.store.path).exists()
    again = rekey.rekey(rotator.store.path, key, new, rotator.log)
    assert again.credentials == 2
    assert len(actions(rotator)) == 5  # nothing re-done, nothing logged twice


def test_rekey_refuses_equal_keys(rotator: Rotator, key: bytes) -> None:
    with pytest.raises(ConfigError, match="same as MCP_ENCRYPTION_KEY"):
        rekey.rekey(rotator.store.path, key, key, rotator.log)


def test_rekey_stops_on_a_tampered_entry_before_writing(rotator: Rotator, key: bytes) -> None:
    rotator.set("a", "1")
    rotator.set("b", "2")
    data = entries(rotator.store.path)
    data["b"] = flip_last_digit(str(data["b"]))
    rotator.store.path.write_text(json.dumps(data))
    before = rotator.store.path.read_bytes()
    with pytest.raises(DecryptionFailed, match=r"entry 'b'.*neither"):
        rekey.rekey(rotator.store.path, key, bytes.fromhex(new_master_key()), rotator.log)
    assert rotator.store.path.read_bytes() == before
    assert not rekey_journal(rotator.store.path).exists()


def test_an_interrupted_rekey_is_finished_by_running_it_again(
    rotator: Rotator, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotator.set("a", "a1")
    rotator.rotate("a", "a2")
    rotator.set("b", "b1")
    new = bytes.fromhex(new_master_key())
    real = files.write_atomic
    writes: list[Path] = []

    def crash_before_the_store(path: Path, data: bytes) -> None:
        if path == rotator.store.path and writes:
            raise KeyboardInterrupt("simulated crash")
        writes.append(path)
        real(path, data)

    monkeypatch.setattr(files, "write_atomic", crash_before_the_store)
    with pytest.raises(KeyboardInterrupt):
        rekey.rekey(rotator.store.path, key, new, rotator.log)
    monkeypatch.setattr(files, "write_atomic", real)
    # journal and .previous written under the new key; the store still wholly under the old
    assert writes == [
        rekey_journal(rotator.store.path),
        bindings_path(rotator.store.path),  # old and new bindings listed, for readers
        previous_path(rotator.store.path),
    ]
    assert rotator.store.load("a") == "a2"
    with pytest.raises(RekeyPending):
        rotator.set("c", "c1")
    with pytest.raises(RekeyPending, match="different key"):
        rekey.rekey(rotator.store.path, key, bytes.fromhex(new_master_key()), rotator.log)
    result = rekey.rekey(rotator.store.path, key, new, rotator.log)
    assert result.resumed
    assert CredentialStore(rotator.store.path, new).load("b") == "b1"
    assert [a for a, _ in actions(rotator)].count("rekeyed") == 2


def test_a_rekey_interrupted_while_logging_logs_each_credential_once(
    rotator: Rotator, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in "abc":
        rotator.set(name, name)
    new = bytes.fromhex(new_master_key())
    real = RotationLog.append
    calls: list[str] = []

    def crash_on_second(self: RotationLog, credential: str, action: str) -> None:
        calls.append(credential)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        real(self, credential, action)

    monkeypatch.setattr(RotationLog, "append", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        rekey.rekey(rotator.store.path, key, new, rotator.log)
    monkeypatch.setattr(RotationLog, "append", real)
    assert rekey.rekey(rotator.store.path, key, new, rotator.log).resumed
    rekeyed = [n for a, n in actions(rotator) if a == "rekeyed"]
    assert sorted(rekeyed) == ["a", "b", "c"]


def test_import_from_the_tutorials_fernet_store(tmp_path: Path, rotator: Rotator) -> None:
    fernet_key = Fernet.generate_key().decode()
    tutorial = tmp_path / "tutorial_credentials.json"
    tutorial_store_credential(tutorial, fernet_key, "scavio_api_key", "sk-tutorial-é")
    tutorial_store_credential(tutorial, fernet_key, "other", "")
    rotator.set("other", "will be replaced")
    names = import_fernet(tutorial, parse_fernet_key(fernet_key), rotator)
    assert names == ["scavio_api_key", "other"]
    assert rotator.store.load("scavio_api_key") == "sk-tutorial-é"
    assert rotator.store.load("other") == ""
    assert actions(rotator)[-2:] == [("imported", "scavio_api_key"), ("imported", "other")]
    rotator.rollback("other")
    assert rotator.store.load("other") == "will be replaced"


def test_import_with_the_wrong_fernet_key_writes_nothing(tmp_path: Path, rotator: Rotator) -> None:
    tutorial = tmp_path / "tutorial_credentials.json"
    tutorial_store_credential(tutorial, Fernet.generate_key().decode(), "k", "v")
    wrong = parse_fernet_key(Fernet.generate_key().decode())
    with pytest.raises(DecryptionFailed, match=r"entry 'k'.*nothing was imported"):
        import_fernet(tutorial, wrong, rotator)
    assert not rotator.store.path.exists()


def test_import_refuses_the_store_itself_and_bad_keys(rotator: Rotator) -> None:
    fernet = parse_fernet_key(Fernet.generate_key().decode())
    rotator.set("k", "v")
    with pytest.raises(ConfigError, match="credential store itself"):
        import_fernet(rotator.store.path, fernet, rotator)
    with pytest.raises(ConfigError, match="MCP_FERNET_KEY is not set"):
        parse_fernet_key(None)
    with pytest.raises(ConfigError, match="not a Fernet key"):
        parse_fernet_key("too-short")


def test_the_actor_comes_from_mcp_actor_or_defaults_to_user_at_host() -> None:
    assert Settings.from_env({"MCP_ACTOR": "ops-bot"}).actor == "ops-bot"
    assert Settings.from_env({"USER": "alice"}).actor.startswith("alice@")
    with pytest.raises(ConfigError, match="MCP_ACTOR"):
        Settings.from_env({"MCP_ACTOR": "evil\nactor"})
