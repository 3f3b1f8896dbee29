"""Writer processes for the fault tests: `python -m tests.credentials.workers sets|zygote`.

Keys come from the environment (MCP_ENCRYPTION_KEY, CHAOS_KEY_A, CHAOS_KEY_B), never argv.

`sets PREFIX COUNT`: COUNT logged `set` calls on the names PREFIX_0..PREFIX_9.

`zygote`: imports everything once, then for each `spawn SEED` line on stdin forks a
child that writes forever (set, rotate, rekey at random) and reports each operation
on stdout as `begin {json}` / `done`; the zygote prints `spawned PID`, waits for the
child (the test SIGKILLs it) and prints `exit PID STATUS`. Forking from a warm
process makes hundreds of kills cheap; every kill is still a real SIGKILL of a
process in the middle of real file operations.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

from mcp_warden.credentials import files
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.envelope import Envelope, cipher
from mcp_warden.credentials.errors import DecryptionFailed
from mcp_warden.credentials.rekey import rekey
from mcp_warden.credentials.rotation import Rotator
from mcp_warden.credentials.store import CredentialStore, rekey_journal

NAMES = [f"cred_{i}" for i in range(12)]
MAX_SECONDS = 10.0  # a child the test failed to kill stops by itself


def _paths() -> tuple[Path, Path]:
    return Path(os.environ["MCP_CREDENTIALS_FILE"]), Path(os.environ["MCP_ROTATION_LOG"])


def sets(prefix: str, count: int) -> None:
    store_path, log_path = _paths()
    key = bytes.fromhex(os.environ["MCP_ENCRYPTION_KEY"])
    rotator = Rotator(CredentialStore(store_path, key), RotationLog(log_path, prefix, key=key))
    for j in range(count):
        rotator.set(f"{prefix}_{j % 10}", f"{prefix}-value-{j}")


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _opens(envelope: object, key: bytes) -> bool:
    try:
        Envelope.parse(str(envelope)).open(cipher(key))
    except DecryptionFailed:
        return False
    return True


def _recover(store_path: Path, log: RotationLog, keys: tuple[bytes, bytes]) -> bytes:
    """Finish an interrupted re-key (as an operator re-running it would); the key in use."""
    a, b = keys
    journal = files.read_object(rekey_journal(store_path))
    if journal is not None:
        target = a if _opens(journal["target_check"], a) else b
        _say("begin " + json.dumps({"op": "rekey"}))
        rekey(store_path, b if target == a else a, target, log)
        _say("done")
        return target
    entries = files.read_object(store_path) or {}
    if not entries:
        return a
    return a if _opens(next(iter(entries.values())), a) else b


def chaos(seed: int) -> None:
    store_path, log_path = _paths()
    keys = (bytes.fromhex(os.environ["CHAOS_KEY_A"]), bytes.fromhex(os.environ["CHAOS_KEY_B"]))
    rng = random.Random(seed)
    log = RotationLog(log_path, f"chaos-{seed}")  # rekey signs it under the keys it is given
    key = _recover(store_path, log, keys)
    deadline = time.monotonic() + MAX_SECONDS
    for i in itertools.count():
        if time.monotonic() > deadline:
            _say("finished")
            return
        rotator = Rotator(CredentialStore(store_path, key), log.under(key))
        existing = rotator.store.names()
        roll = rng.random()
        if roll < 0.25:
            other = keys[1] if key == keys[0] else keys[0]
            _say("begin " + json.dumps({"op": "rekey"}))
            rekey(store_path, key, other, log)
            key = other
        else:
            op = "rotate" if roll < 0.6 and existing else "set"
            name = rng.choice(existing if op == "rotate" else NAMES)
            value = f"{name}/{seed}/{i}/é"
            _say("begin " + json.dumps({"op": op, "name": name, "value": value}))
            if op == "rotate":
                rotator.rotate(name, value)
            else:
                rotator.set(name, value)
        _say("done")


def zygote() -> None:
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command != "spawn":
            continue
        pid = os.fork()
        if pid == 0:  # the child writes until it is killed
            code = 0
            try:
                chaos(int(arg))
            except BaseException as exc:
                _say(f"error {type(exc).__name__}: {exc}")
                code = 1
            os._exit(code)
        _say(f"spawned {pid}")
        _, status = os.waitpid(pid, 0)
        _say(f"exit {pid} {status}")


def main(argv: list[str]) -> None:
    if argv[0] == "sets":
        sets(argv[1], int(argv[2]))
    elif argv[0] == "zygote":
        zygote()
    else:
        raise SystemExit(f"unknown worker {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
