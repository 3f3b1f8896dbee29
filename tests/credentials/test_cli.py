"""`mcp-warden keygen` and `mcp-warden cred ...` as real processes: exit codes, stdin, no leaks."""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.rotation import Rotator
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import run_cli
from tests.support.cli import error_line, succeeded
from tests.support.credentials import (
    LOG,
    STORE,
    cred_env,
    new_master_key,
    tutorial_store_credential,
)

pytestmark = pytest.mark.slow


def one_line_error(result: subprocess.CompletedProcess[str], code: int, pattern: str) -> None:
    line = error_line(result, code)
    assert re.search(pattern, line), line


def test_keygen_prints_a_fresh_64_hex_key(tmp_path: Path) -> None:
    first = succeeded(run_cli(["keygen"], cred_env(tmp_path, "")))
    second = succeeded(run_cli(["keygen"], cred_env(tmp_path, "")))
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.stdout)
    assert first.stdout != second.stdout


def test_values_come_from_stdin_without_one_trailing_newline(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="line one\nline two\n"))
    succeeded(run_cli(["cred", "set", "b"], env, input="windows\r\n"))
    empty = succeeded(run_cli(["cred", "set", "c"], env, input=""))
    assert "empty" in empty.stderr
    assert succeeded(run_cli(["cred", "get", "a"], env)).stdout == "line one\nline two\n"
    assert succeeded(run_cli(["cred", "get", "b"], env)).stdout == "windows\n"
    assert succeeded(run_cli(["cred", "get", "c"], env)).stdout == "\n"


def test_usage_and_configuration_errors_exit_2(tmp_path: Path) -> None:
    key = new_master_key()
    one_line_error(run_cli(["cred", "get", "a"], cred_env(tmp_path, "")), 2, "keygen")
    one_line_error(run_cli(["cred", "get", "a"], cred_env(tmp_path, key[:-2])), 2, "62 char")
    one_line_error(run_cli(["cred", "set", "no good"], cred_env(tmp_path, key)), 2, "valid")
    one_line_error(run_cli(["cred", "rekey"], cred_env(tmp_path, key)), 2, "MCP_NEW_ENCRYPTION")
    one_line_error(
        run_cli(["cred", "import-fernet", "x.json"], cred_env(tmp_path, key)), 2, "MCP_FERNET_KEY"
    )
    bad_value = subprocess.run(
        [sys.executable, "-m", "mcp_warden", "cred", "set", "a"],
        env=cred_env(tmp_path, key),
        input=b"\xff\xfe",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert bad_value.returncode == 2
    assert b"not UTF-8" in bad_value.stderr
    assert not (tmp_path / STORE).exists()
    assert run_cli(["cred", "due", "--max-age-days", "0"], cred_env(tmp_path, key)).returncode == 2


def test_failed_checks_exit_1_with_one_line(tmp_path: Path) -> None:
    key = new_master_key()
    env = cred_env(tmp_path, key)
    one_line_error(run_cli(["cred", "get", "nope"], env), 1, "no credential 'nope'")
    succeeded(run_cli(["cred", "set", "a"], env, input="v"))
    one_line_error(
        run_cli(["cred", "get", "a"], cred_env(tmp_path, new_master_key())), 1, "'a'.*tamper"
    )
    one_line_error(run_cli(["cred", "rollback", "a"], env), 1, "no previous value")
    (tmp_path / STORE).write_text("{broken")
    one_line_error(run_cli(["cred", "get", "a"], env), 1, "not valid JSON")
    one_line_error(run_cli(["cred", "set", "b"], env, input="v"), 1, "not valid JSON")
    assert (tmp_path / STORE).read_text() == "{broken"


def test_due_exits_1_when_a_credential_is_due(tmp_path: Path) -> None:
    key = new_master_key()
    env = cred_env(tmp_path, key)
    succeeded(run_cli(["cred", "set", "fresh"], env, input="v"))
    succeeded(run_cli(["cred", "set", "stale"], env, input="v"))
    assert "no credential is due" in succeeded(run_cli(["cred", "due"], env)).stdout
    # the log says "stale" was last set 40 days ago
    long_ago = datetime.now(UTC) - timedelta(days=40)
    (tmp_path / LOG).unlink()
    master = bytes.fromhex(key)
    RotationLog(tmp_path / LOG, "tester", key=master, clock=lambda: long_ago).append(
        "stale", "created"
    )
    RotationLog(tmp_path / LOG, "tester", key=master).append("fresh", "created")
    due = run_cli(["cred", "due"], env)
    assert due.returncode == 1
    assert due.stdout.splitlines() == ["stale: due (age 40 d, max 30 d)"]
    assert succeeded(run_cli(["cred", "due", "--max-age-days", "41"], env)).stdout.startswith("no ")
    listing = succeeded(run_cli(["cred", "list"], env)).stdout.splitlines()
    assert re.fullmatch(r"fresh\s+0 d\s+no", listing[1])
    assert re.fullmatch(r"stale\s+40 d\s+yes", listing[2])


def test_log_verify_finds_an_edited_reordered_or_deleted_line(tmp_path: Path) -> None:
    key = new_master_key()
    env = cred_env(tmp_path, key)
    master = bytes.fromhex(key)
    rotator = Rotator(
        CredentialStore(tmp_path / STORE, master), RotationLog(tmp_path / LOG, "t", key=master)
    )
    for name in "abcd":
        rotator.set(name, "v")
    assert "4 lines verified" in succeeded(run_cli(["cred", "log", "--verify"], env)).stdout
    log = tmp_path / LOG
    good = log.read_bytes().splitlines(keepends=True)
    edited = [good[0], good[1].replace(b'"b"', b'"z"'), *good[2:]]
    reordered = [good[0], good[2], good[1], good[3]]
    deleted = [good[0], good[2], good[3]]
    for lines, first_bad in ((edited, 3), (reordered, 2), (deleted, 2)):
        log.write_bytes(b"".join(lines))
        result = run_cli(["cred", "log", "--verify"], env)
        one_line_error(result, 1, f"line {first_bad} .*does not chain to line {first_bad - 1}")


def test_no_secret_in_any_output_or_file(tmp_path: Path) -> None:
    """Every command, success and failure: only `cred get`'s stdout may carry a value."""
    old, new = new_master_key(), new_master_key()
    fernet_key = Fernet.generate_key().decode()
    values = {name: f"canary-{name}-{secrets.token_hex(8)}" for name in ("a", "b", "c", "f")}
    rotated = f"canary-rotated-{secrets.token_hex(8)}"
    tutorial = tmp_path / "tutorial.json"
    tutorial_store_credential(tutorial, fernet_key, "f", values["f"])
    env = cred_env(tmp_path, old, MCP_NEW_ENCRYPTION_KEY=new, MCP_FERNET_KEY=fernet_key)
    new_env = cred_env(tmp_path, new)
    outputs: list[str] = []

    def run(
        args: list[str], environ: dict[str, str], stdin: str = "", code: int = 0
    ) -> subprocess.CompletedProcess[str]:
        result = run_cli(args, environ, input=stdin)
        assert result.returncode == code, (args, result.stderr)
        outputs.append(result.stderr)
        if args[:2] != ["cred", "get"]:
            outputs.append(result.stdout)
        return result

    run(["keygen"], env)
    for name in ("a", "b", "c"):
        run(["cred", "set", name], env, values[name] + "\n")
    assert run(["cred", "get", "a"], env).stdout == values["a"] + "\n"
    run(["cred", "rotate", "b"], env, rotated)
    run(["cred", "rollback", "b"], env)
    run(["cred", "list"], env)
    run(["cred", "due"], env)
    run(["cred", "log"], env)
    run(["cred", "log", "--verify"], env)
    run(["cred", "import-fernet", str(tutorial)], env)
    run(["cred", "get", "a"], new_env, code=1)  # wrong key
    run(["cred", "rekey"], env)
    run(["cred", "get", "a"], cred_env(tmp_path, old), code=1)  # now the old key is wrong
    assert run(["cred", "get", "a"], env).stdout == values["a"] + "\n"  # old + NEW: reads
    run(["cred", "delete", "c"], new_env)
    run(["cred", "set", "d"], cred_env(tmp_path, new[:-1] + "g"), "x", code=2)
    run(["cred", "rekey"], cred_env(tmp_path, new, MCP_NEW_ENCRYPTION_KEY="zz" * 32), code=2)
    bad_fernet = cred_env(tmp_path, new, MCP_FERNET_KEY="x")
    run(["cred", "import-fernet", str(tutorial)], bad_fernet, code=2)
    store = json.loads((tmp_path / STORE).read_text())
    store["a"] = store["a"][:-1] + ("0" if store["a"][-1] != "0" else "1")
    (tmp_path / STORE).write_text(json.dumps(store))
    run(["cred", "get", "a"], new_env, code=1)  # tampered
    assert run(["cred", "get", "b"], new_env).stdout == values["b"] + "\n"

    files = [p for p in tmp_path.iterdir() if p.is_file() and p != tutorial]
    assert {p.name for p in files} >= {STORE, STORE + ".previous", LOG}
    haystack = "\n".join(outputs + [p.read_bytes().decode("utf-8", "replace") for p in files])
    secrets_to_hide = [*values.values(), rotated, old, new, old.upper(), new.upper(), fernet_key]
    for secret in secrets_to_hide:
        assert secret not in haystack
    assert len([o for o in outputs if o]) >= 15


def test_the_prompt_does_not_echo_the_value(tmp_path: Path) -> None:
    """On a terminal the value is asked twice through getpass; it never appears on screen."""
    env = cred_env(tmp_path, new_master_key())
    secret = f"typed-{secrets.token_hex(6)}"
    pid, master = pty.fork()
    if pid == 0:  # the child: `mcp-warden cred set k` on a pseudo-terminal
        argv = [sys.executable, "-m", "mcp_warden", "cred", "set", "k"]
        os.execve(sys.executable, argv, env)  # noqa: S606  (fixed argv, like run_cli)
    screen = b""
    try:
        for _ in range(2):  # the prompt, then the confirmation prompt
            screen += _read_until(master, b": ")
            os.write(master, secret.encode() + b"\n")
        screen += _read_until(master, b"created")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert b"value of k" in screen
    assert secret.encode() not in screen
    assert succeeded(run_cli(["cred", "get", "k"], env)).stdout == secret + "\n"


def _read_until(fd: int, marker: bytes, timeout: float = 20.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} within {timeout} s; saw {data!r}"
        data += os.read(fd, 4096)
    return data
