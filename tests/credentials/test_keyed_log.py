"""The rotation log through the real CLI: keyed chain, legacy logs, re-key, links, modes, actors."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from mcp_warden.credentials.auditlog import GENESIS
from mcp_warden.demo.harness import run_cli
from tests.support.cli import error_line, succeeded
from tests.support.credentials import LOG, STORE, cred_env, new_master_key

pytestmark = pytest.mark.slow


def rechain(lines: list[bytes]) -> list[bytes]:
    """What a forger without the key can do: recompute every `prev` as a sha256 chain."""
    out: list[bytes] = []
    for line in lines:
        record = json.loads(line)
        record["prev"] = hashlib.sha256(out[-1]).hexdigest() if out else GENESIS
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return out


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def legacy_log(path: Path, events: list[tuple[str, str]]) -> None:
    """A log as mcp-warden wrote it before the log was keyed (no 'mac')."""
    lines: list[bytes] = []
    for credential, action in events:
        record = {
            "time": "2026-01-01T00:00:00.000000Z",
            "credential": credential,
            "action": action,
            "actor": "ops@old-host",
            "prev": hashlib.sha256(lines[-1]).hexdigest() if lines else GENESIS,
        }
        lines.append(json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode())
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    path.chmod(0o600)


def test_a_forged_line_with_a_recomputed_sha256_chain_fails_verify_and_is_named(
    tmp_path: Path,
) -> None:
    env = cred_env(tmp_path, new_master_key())
    for name in "abc":
        succeeded(run_cli(["cred", "set", name], env, input="v"))
    succeeded(run_cli(["cred", "rotate", "a"], env, input="w"))
    log = tmp_path / LOG
    good = log.read_bytes().splitlines()
    assert len(good) == 4

    # Edit line 2 (who did it), then recompute the whole sha256 chain: the old verify passed this.
    edited = list(good)
    edited[1] = edited[1].replace(b'"actor":"tester@ci"', b'"actor":"someone-else"')
    write_lines(log, rechain(edited))
    error_line(run_cli(["cred", "log", "--verify"], env), 1, "line 2 ", "does not authenticate")

    # Drop the MACs from line 2 on (a keyless rewrite of the tail) and recompute the chain.
    stripped = [good[0]] + [
        json.dumps({k: v for k, v in json.loads(line).items() if k != "mac"}).encode()
        for line in edited[1:]
    ]
    write_lines(log, rechain(stripped))
    error_line(
        run_cli(["cred", "log", "--verify"], env),
        1,
        "line 2 ",
        "has no 'mac' although line 1",
    )

    write_lines(log, good)
    verified = succeeded(run_cli(["cred", "log", "--verify"], env))
    assert "4 lines verified (4 keyed)" in verified.stdout
    assert verified.stderr == ""


def test_log_verify_without_the_master_key_says_it_needs_mcp_encryption_key(
    tmp_path: Path,
) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="v"))
    error_line(
        run_cli(["cred", "log", "--verify"], cred_env(tmp_path, "")),
        2,
        "needs MCP_ENCRYPTION_KEY",
    )
    # Reading the log for display needs no key.
    assert "created" in succeeded(run_cli(["cred", "log"], cred_env(tmp_path, ""))).stdout


def test_after_rekey_the_log_verifies_under_the_new_key_only(tmp_path: Path) -> None:
    old, new = new_master_key(), new_master_key()
    env = cred_env(tmp_path, old)
    succeeded(run_cli(["cred", "set", "a"], env, input="1"))
    succeeded(run_cli(["cred", "rotate", "a"], env, input="2"))
    succeeded(run_cli(["cred", "set", "b"], env, input="3"))
    before = (tmp_path / LOG).read_bytes().splitlines()
    succeeded(run_cli(["cred", "rekey"], cred_env(tmp_path, old, MCP_NEW_ENCRYPTION_KEY=new)))

    after = (tmp_path / LOG).read_bytes().splitlines()
    assert len(after) == len(before) + 2  # one `rekeyed` line per credential
    for was, now in zip(before, after, strict=False):  # same events, re-signed
        assert {k: v for k, v in json.loads(was).items() if k not in ("prev", "mac")} == {
            k: v for k, v in json.loads(now).items() if k not in ("prev", "mac")
        }
        assert json.loads(was)["mac"] != json.loads(now)["mac"]
    verified = succeeded(run_cli(["cred", "log", "--verify"], cred_env(tmp_path, new)))
    assert "5 lines verified (5 keyed)" in verified.stdout
    error_line(
        run_cli(["cred", "log", "--verify"], cred_env(tmp_path, old)),
        1,
        "line 1 ",
        "does not authenticate under MCP_ENCRYPTION_KEY",
    )
    # The new key extends it; the old one can no longer add a line.
    succeeded(run_cli(["cred", "set", "c"], cred_env(tmp_path, new), input="4"))
    verified = succeeded(run_cli(["cred", "log", "--verify"], cred_env(tmp_path, new)))
    assert "6 lines verified (6 keyed)" in verified.stdout


def test_rekey_refuses_a_log_that_does_not_verify_and_changes_nothing(tmp_path: Path) -> None:
    old = new_master_key()
    env = cred_env(tmp_path, old)
    succeeded(run_cli(["cred", "set", "a"], env, input="1"))
    succeeded(run_cli(["cred", "set", "b"], env, input="2"))
    log = tmp_path / LOG
    lines = log.read_bytes().splitlines()
    write_lines(log, rechain([lines[0], lines[1].replace(b'"b"', b'"z"')]))
    store_before, log_before = (tmp_path / STORE).read_bytes(), log.read_bytes()
    error_line(
        run_cli(
            ["cred", "rekey"], cred_env(tmp_path, old, MCP_NEW_ENCRYPTION_KEY=new_master_key())
        ),
        1,
        "line 2 ",
        "nothing was re-keyed",
    )
    assert (tmp_path / STORE).read_bytes() == store_before
    assert log.read_bytes() == log_before
    assert not (tmp_path / (STORE + ".rekey")).exists()


def test_a_legacy_unkeyed_log_verifies_with_a_warning_and_the_next_change_keys_it(
    tmp_path: Path,
) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="1"))
    log = tmp_path / LOG
    legacy_log(log, [("a", "created"), ("a", "rotated"), ("b", "created")])

    legacy = succeeded(run_cli(["cred", "log", "--verify"], env))
    assert "3 lines verified (0 keyed)" in legacy.stdout
    assert legacy.stderr.startswith("mcp-warden: warning: no line of ")
    assert "is keyed" in legacy.stderr

    succeeded(run_cli(["cred", "rotate", "a"], env, input="2"))  # the first keyed line
    lines = log.read_bytes().splitlines()
    assert len(lines) == 4
    assert "mac" in json.loads(lines[3])
    assert json.loads(lines[3])["prev"] == hashlib.sha256(lines[2]).hexdigest()
    migrated = succeeded(run_cli(["cred", "log", "--verify"], env))
    assert "4 lines verified (1 keyed)" in migrated.stdout
    assert "lines 1-3 " in migrated.stderr
    assert "predate the keyed log" in migrated.stderr

    # From now on the legacy lines are covered: rewriting one breaks the keyed line's MAC.
    forged = list(lines)
    forged[0] = forged[0].replace(b"ops@old-host", b"nobody@nowhere")
    write_lines(log, [*rechain(forged[:3]), *rechain(forged)[3:]])
    error_line(run_cli(["cred", "log", "--verify"], env), 1, "line 4 ", "does not authenticate")


def test_a_symlink_at_the_rotation_log_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    env = cred_env(tmp_path, new_master_key())
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o640)
    (tmp_path / LOG).symlink_to(victim)
    for args in (["cred", "set", "a"], ["cred", "log"], ["cred", "log", "--verify"]):
        error_line(
            run_cli(args, env, input="v"),
            2,
            f"the rotation log {tmp_path / LOG} is a symbolic link",
        )
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o640
    assert not (tmp_path / STORE).exists()  # refused before the store changed


def test_symlinks_at_the_lock_and_previous_values_files_are_refused(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="1"))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")

    previous = tmp_path / (STORE + ".previous")
    previous.symlink_to(victim)
    error_line(run_cli(["cred", "rotate", "a"], env, input="2"), 2, "is a symbolic link")
    assert previous.is_symlink()
    previous.unlink()

    lock = tmp_path / (STORE + ".lock")
    lock.unlink()
    lock.symlink_to(victim)
    error_line(run_cli(["cred", "rotate", "a"], env, input="2"), 2, "lock file", "symbolic link")
    assert victim.read_text() == "precious\n"
    assert succeeded(run_cli(["cred", "get", "a"], env)).stdout == "1\n"


def test_a_loose_rotation_log_mode_is_warned_about(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    succeeded(run_cli(["cred", "set", "a"], env, input="1"))
    log = tmp_path / LOG
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    log.chmod(0o644)
    for args in (["cred", "set", "b"], ["cred", "log"]):
        result = succeeded(run_cli(args, env, input="2"))
        assert f"{log} is accessible to group or others (mode 644)" in result.stderr
        assert f"chmod 600 {log}" in result.stderr
    assert stat.S_IMODE(log.stat().st_mode) == 0o644  # warned, not silently changed


def test_a_newline_in_user_cannot_forge_a_cred_log_line(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key(), MCP_ACTOR="")
    forged = "mallory\n2026-01-01 00:00:00Z  created       a  by admin@host"
    for variable in ("USER", "LOGNAME"):
        bad = {**env, "USER": "", "LOGNAME": "", variable: forged}
        error_line(
            run_cli(["cred", "set", "a"], bad, input="v"),
            2,
            f"{variable}@host",
            "printable",
            "set MCP_ACTOR",
        )
    assert not (tmp_path / LOG).exists()
    succeeded(run_cli(["cred", "set", "a"], {**env, "USER": "alice"}, input="v"))
    assert " by alice@" in succeeded(run_cli(["cred", "log"], env)).stdout


def test_cred_log_escapes_control_characters_when_displaying(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    # A line whose actor and name carry control characters (an edited log, or one written by
    # an older version): the display must stay one line per event, whatever the file holds.
    record = {
        "time": "2026-01-01T00:00:00.000000Z",
        "credential": "name\rwith\u202ecr",
        "action": "created",
        "actor": "evil\n2026-01-01 00:00:00Z  x\x1b[2K",
        "prev": GENESIS,
    }
    (tmp_path / LOG).write_bytes(json.dumps(record).encode() + b"\n")
    (tmp_path / LOG).chmod(0o600)
    shown = succeeded(run_cli(["cred", "log"], env)).stdout
    assert shown.count("\n") == 1, shown
    assert "\\n2026-01-01" in shown
    assert "\\x1b[2K" in shown
    assert "name\\rwith\\u202ecr" in shown
    assert not any(ch in shown[:-1] for ch in "\r\x1b\u202e")
