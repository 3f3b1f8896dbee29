"""Fault tests: concurrent writers, SIGKILL at random moments. Bounded in count and time."""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_warden.credentials import bindings, files
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.bindings import bindings_path
from mcp_warden.credentials.envelope import Envelope, cipher
from mcp_warden.credentials.errors import DecryptionFailed
from mcp_warden.credentials.store import CredentialStore, previous_path
from mcp_warden.demo.harness import stop
from tests.support.credentials import LOG, STORE, cred_env, new_master_key
from tests.support.procs import REPO

pytestmark = pytest.mark.slow

WORKERS = [sys.executable, "-m", "tests.credentials.workers"]


def test_eight_processes_times_fifty_sets_lose_nothing(tmp_path: Path) -> None:
    key = new_master_key()
    env = cred_env(tmp_path, key)
    procs = [
        subprocess.Popen([*WORKERS, "sets", f"p{i}", "50"], env=env, cwd=REPO) for i in range(8)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    store = CredentialStore(tmp_path / STORE, bytes.fromhex(key))
    assert len(store.names()) == 80
    for i in range(8):
        for k in range(10):
            assert store.load(f"p{i}_{k}") == f"p{i}-value-{40 + k}"
    log = RotationLog(tmp_path / LOG, "check", key=bytes.fromhex(key))
    assert log.verify().lines == 400
    assert Counter(e.action for e in log.events()) == {"created": 80, "rotated": 320}
    kept = files.read_object(previous_path(tmp_path / STORE)) or {}
    assert len(kept) == 80  # every name's previous value (its 4th of 5 sets) is kept


def test_readers_never_see_a_rotation_as_a_swapped_or_unbound_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server's `load` runs without the lock while writers rotate: no false alarm, ever."""
    key = new_master_key()
    env = cred_env(tmp_path, key)
    store = CredentialStore(tmp_path / STORE, bytes.fromhex(key))
    procs = [
        subprocess.Popen([*WORKERS, "sets", f"p{i}", "60"], env=env, cwd=REPO) for i in range(3)
    ]
    loads = 0
    try:
        with caplog.at_level(logging.WARNING, logger="mcp_warden.credentials"):
            while any(proc.poll() is None for proc in procs):
                for name in store.names():
                    store.load(name)  # BindingMismatch here would fail the test
                    loads += 1
    finally:
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    assert loads > 100, loads
    assert "not bound" not in caplog.text
    assert len(store.names()) == 30


@dataclass
class Pending:
    op: str
    name: str | None = None
    value: str | None = None


def _single_key(path: Path, entries: dict[str, object], keys: list[bytes]) -> bytes | None:
    """The one key every entry of a file opens under (None for an empty file)."""
    if not entries:
        return None
    for key in keys:
        aead = cipher(key)
        try:
            for envelope in entries.values():
                Envelope.parse(str(envelope)).open(aead)
        except DecryptionFailed:
            continue
        return key
    pytest.fail(f"{path.name} does not open wholly under one key: {sorted(entries)}")


def _check(
    tmp_path: Path,
    keys: list[bytes],
    committed: dict[str, str],
    pending: Pending | None,
    ever: dict[str, set[str]],
) -> None:
    """The store parses and every entry committed before the kill decrypts (old or new key)."""
    entries = files.read_object(tmp_path / STORE) or {}
    key = _single_key(tmp_path / STORE, entries, keys)
    lost = set(committed) - set(entries)
    assert not lost, f"committed entries lost: {sorted(lost)}"
    for name, envelope in entries.items():
        assert key is not None
        got = Envelope.parse(str(envelope)).open(cipher(key)).decode()
        allowed = {committed[name]} if name in committed else set()
        if pending is not None and pending.name == name and pending.value is not None:
            allowed.add(pending.value)
        assert got in allowed, (name, got, allowed)
        committed[name] = got  # an in-flight write that did land is committed now
    previous = files.read_object(previous_path(tmp_path / STORE)) or {}
    prev_key = _single_key(previous_path(tmp_path / STORE), previous, keys)
    for name, envelope in previous.items():
        assert prev_key is not None
        assert Envelope.parse(str(envelope)).open(cipher(prev_key)).decode() in ever[name]
    # every entry is bound (under either key) at every kill: no crash makes one look swapped
    read = bindings.read(bindings_path(tmp_path / STORE))
    bound = read[1] if read is not None else bindings.Bindings()
    binder = bindings.Binder(*keys)
    sections: tuple[tuple[bindings.Section, dict[str, object]], ...] = (
        ("entries", entries),
        ("previous", previous),
    )
    for section, found in sections:
        for name, envelope in found.items():
            verdict = binder.verdict(section, name, str(envelope), bound)
            assert verdict.status is bindings.Status.BOUND, (section, name, verdict)


def test_sigkill_during_set_rotate_and_rekey_never_loses_committed_entries(
    tmp_path: Path,
) -> None:
    a, b = new_master_key(), new_master_key()
    keys = [bytes.fromhex(a), bytes.fromhex(b)]
    env = cred_env(tmp_path, a, CHAOS_KEY_A=a, CHAOS_KEY_B=b)
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    zygote = subprocess.Popen(
        [*WORKERS, "zygote"],
        env=env,
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # `stop` then ends the zygote and any child it forked
    )
    assert zygote.stdin is not None
    assert zygote.stdout is not None
    committed: dict[str, str] = {}
    ever: dict[str, set[str]] = defaultdict(set)
    killed_during: Counter[str] = Counter()
    pending: Pending | None = None

    def next_report() -> tuple[str, str]:
        """Read lines, tracking the child's operations, until the zygote speaks."""
        nonlocal pending
        assert zygote.stdout is not None
        while True:
            line = zygote.stdout.readline().decode()
            assert line, f"zygote ended (seed {seed})"
            word, _, rest = line.strip().partition(" ")
            if word == "begin":
                pending = Pending(**json.loads(rest))
                if pending.name is not None and pending.value is not None:
                    ever[pending.name].add(pending.value)
            elif word == "done":
                assert pending is not None
                if pending.name is not None and pending.value is not None:
                    committed[pending.name] = pending.value
                pending = None
            elif word in ("spawned", "exit"):
                return word, rest
            else:
                pytest.fail(f"worker said {line!r} (seed {seed})")

    kills, deadline = 0, time.monotonic() + 75
    try:
        while kills < 240 and time.monotonic() < deadline:
            pending = None
            zygote.stdin.write(f"spawn {rng.getrandbits(32)}\n".encode())
            zygote.stdin.flush()
            word, pid = next_report()  # the child may already have begun an operation
            assert word == "spawned", (seed, word)
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(int(pid), signal.SIGKILL)
            word, rest = next_report()
            assert word == "exit", (seed, word)
            status = int(rest.split()[1])
            assert os.WIFSIGNALED(status), (seed, status)
            assert os.WTERMSIG(status) == signal.SIGKILL
            killed_during[pending.op if pending else "between operations"] += 1
            _check(tmp_path, keys, committed, pending, ever)
            kills += 1
    finally:
        zygote.stdin.close()
        stop(zygote)
    print(f"seed {seed}: {kills} SIGKILLs, in flight: {dict(killed_during)}")
    assert kills >= 200, (seed, kills, killed_during)
    for op in ("set", "rotate", "rekey"):
        assert killed_during[op] >= 10, (seed, killed_during)
    # every kill left a chain that verifies, wholly under one of the two keys
    RotationLog(tmp_path / LOG, "check", key=keys[0], next_key=keys[1]).verify()
