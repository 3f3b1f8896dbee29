"""Entry bindings: a swapped or restored envelope is refused by the CLI, the store and `serve`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mcp_warden.credentials import bindings, files, rekey
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.errors import BindingMismatch
from mcp_warden.credentials.rotation import Rotator
from mcp_warden.credentials.store import CredentialStore, previous_path, rekey_journal
from mcp_warden.demo.harness import post, run_cli, tools_call
from tests.support.cli import error_line, succeeded
from tests.support.credentials import LOG, STORE, cred_env, new_master_key
from tests.support.server import CREDENTIAL, deployment


def edit(path: Path, **changes: object) -> None:
    """Change entries of a JSON file in place (what someone with write access can do)."""
    entries = json.loads(path.read_text())
    entries.update(changes)
    path.write_text(json.dumps(entries, indent=2))


def read(path: Path) -> dict[str, object]:
    return files.read_object(path) or {}


@pytest.mark.slow
def test_an_envelope_copied_into_another_entry_is_refused_by_cred_get_and_verify(
    tmp_path: Path,
) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="alpha"))
    succeeded(run_cli(["cred", "set", "b"], env, input="bravo"))
    store = tmp_path / STORE
    edit(store, a=read(store)["b"])

    error = error_line(run_cli(["cred", "get", "a"], env), 1, "'a'", "value of credential 'b'")
    assert "mcp-warden cred set a" in error
    assert "bravo" not in error
    assert succeeded(run_cli(["cred", "get", "b"], env)).stdout == "bravo\n"
    verify = run_cli(["cred", "verify"], env)
    assert verify.returncode == 1, verify.stderr
    assert "a: SWAPPED: holds the value of credential 'b'" in verify.stdout
    assert "b: ok" in verify.stdout

    # A write elsewhere keeps the mismatch (it is never bound by accident) ...
    succeeded(run_cli(["cred", "set", "c"], env, input="charlie"))
    error_line(run_cli(["cred", "get", "a"], env), 1, "value of credential 'b'")
    assert run_cli(["cred", "verify", "--bind"], env).returncode == 1
    error_line(run_cli(["cred", "get", "a"], env), 1, "value of credential 'b'")
    # ... and setting the entry again is the fix.
    succeeded(run_cli(["cred", "set", "a"], env, input="alpha2"))
    assert succeeded(run_cli(["cred", "get", "a"], env)).stdout == "alpha2\n"
    assert "a (previous value)" not in succeeded(run_cli(["cred", "verify"], env)).stdout


@pytest.mark.slow
def test_an_old_value_copied_back_from_previous_is_refused(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="old"))
    succeeded(run_cli(["cred", "rotate", "a"], env, input="new"))
    store = tmp_path / STORE
    edit(store, a=read(previous_path(store))["a"])
    error_line(run_cli(["cred", "get", "a"], env), 1, "'a'", "the previous value of 'a'")
    # The operator's way back to an old value is a logged rollback; setting `a` again does
    # not keep the copied envelope as a previous value.
    succeeded(run_cli(["cred", "set", "a"], env, input="newer"))
    succeeded(run_cli(["cred", "rollback", "a"], env))
    assert succeeded(run_cli(["cred", "get", "a"], env)).stdout == "old\n"
    assert succeeded(run_cli(["cred", "verify"], env)).stdout.count(": ok") == 2


@pytest.mark.slow
def test_rollback_refuses_a_previous_value_swapped_from_another_name(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    for name in "ab":
        succeeded(run_cli(["cred", "set", name], env, input=f"{name}1"))
        succeeded(run_cli(["cred", "rotate", name], env, input=f"{name}2"))
    store = tmp_path / STORE
    edit(previous_path(store), a=read(previous_path(store))["b"])
    before = store.read_bytes()
    error_line(run_cli(["cred", "rollback", "a"], env), 1, "previous value of 'a'", "nothing was")
    assert store.read_bytes() == before


def test_load_refuses_a_swapped_entry_and_checks_it_once_per_store_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = bytes.fromhex(new_master_key())
    writer = CredentialStore(tmp_path / STORE, key)
    writer.set("a", "alpha")
    writer.set("b", "bravo")
    server = CredentialStore(tmp_path / STORE, key)  # a server's long-lived store
    calls: list[str] = []
    real = bindings.Binder.verdict

    def counting(self: bindings.Binder, *args: object) -> bindings.Verdict:
        calls.append(str(args[1]))
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bindings.Binder, "verdict", counting)
    for _ in range(50):
        assert server.load("a") == "alpha"
    assert calls == ["a"]
    edit(tmp_path / STORE, a=read(tmp_path / STORE)["b"])
    for _ in range(3):
        with pytest.raises(BindingMismatch, match=r"'a' .* holds the value of credential 'b'"):
            server.load("a")
    assert calls == ["a", "a"]
    assert server.load("b") == "bravo"


REKEY_WRITES = 6  # journal, bindings (old and new), .previous, store, bindings (new), log


@pytest.mark.parametrize("crash_after", range(1, REKEY_WRITES + 1))
def test_rekey_rebinds_under_the_new_key_and_readers_with_both_keys_keep_loading(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    crash_after: int,
) -> None:
    old, new = bytes.fromhex(new_master_key()), bytes.fromhex(new_master_key())
    path = tmp_path / STORE
    rotator = Rotator(CredentialStore(path, old), RotationLog(tmp_path / LOG, "t", key=old))
    rotator.set("a", "a1")
    rotator.rotate("a", "a2")
    rotator.set("b", "b1")
    server = CredentialStore(path, old, next_key=new)  # a server given both keys
    assert (server.load("a"), server.load("b")) == ("a2", "b1")

    real = files.write_atomic
    writes: list[Path] = []

    def crashing(target: Path, data: bytes, mode: int = 0o600) -> None:
        real(target, data, mode)
        writes.append(target)
        if len(writes) == crash_after:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(files, "write_atomic", crashing)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        rekey.rekey(path, old, new, rotator.log)
    monkeypatch.setattr(files, "write_atomic", real)
    with caplog.at_level(logging.WARNING):
        assert (server.load("a"), server.load("b")) == ("a2", "b1"), writes
        assert rekey.rekey(path, old, new, rotator.log).resumed
        assert (server.load("a"), server.load("b")) == ("a2", "b1")
    assert not rekey_journal(path).exists()
    assert "not bound" not in caplog.text

    alone = CredentialStore(path, new)
    assert (alone.load("a"), alone.load("b")) == ("a2", "b1")
    assert {(c.section, c.name, c.status) for c in alone.check()} == {
        ("entries", "a", "ok"),
        ("entries", "b", "ok"),
        ("previous", "a", "ok"),
    }
    assert RotationLog(tmp_path / LOG, "t", key=new).verify().legacy == 0
    # Bound under the new key: a swap is still found, under the new key alone.
    edit(path, b=read(previous_path(path))["a"])
    with pytest.raises(BindingMismatch, match="the previous value of 'a'"):
        CredentialStore(path, new).load("b")


@pytest.mark.slow
def test_the_server_refuses_a_swapped_key_before_calling_the_upstream(tmp_path: Path) -> None:
    with deployment(tmp_path) as lab:
        succeeded(lab.cli("cred", "set", "other_service_key", input="sk-other-service\n"))
        store = tmp_path / "mcp_credentials.enc"
        edit(store, **{CREDENTIAL: read(store)["other_service_key"]})
        token = lab.mint(["web_search"])
        with lab.serve() as served:
            answer = post(served.url, tools_call("web_search", {"query": "q"}), token).json()
            output = served.output()
        result = answer["result"]
        assert result["isError"] is True, answer
        text = json.dumps(result)
        # The client gets the fixed reason (issue 8 item 13); the server log names the swap.
        assert "(no_credential)" in text
        assert "other_service_key" not in text
        assert "value of credential 'other_service_key'" in output
        assert "sk-other-service" not in text + output
        assert lab.stub.calls() == 0  # the swapped key never left the server
