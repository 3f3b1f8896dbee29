"""The Scavio-compatible stub upstream as a real process, for any test area.

with stub_process(tmp_path, keys=[key]) as stub:
    stub.url                      # http://127.0.0.1:PORT, for SCAVIO_BASE_URL
    stub.mode(status=429, times=2, retry_after=0)
    stub.calls("/api/v2/google")  # how many calls reached that endpoint
    stub.keys_used()              # SHA-256 prefixes (mcp_warden.stub_upstream.key_id)
    stub.set_keys(new_key)        # rotate the accepted keys (atomic, 0600)
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_warden.credentials.files import write_atomic
from tests.support.procs import background, cli_env


def new_key() -> str:
    """A fresh random test key (never a real one)."""
    return "sk_test_" + secrets.token_urlsafe(24)


def key_runs(text: str, key: str, run: int = 8) -> list[str]:
    """Every run of `run` characters of `key` that `text` holds, in any case (none: [])."""
    folded, wanted = text.casefold(), key.casefold()
    pieces = {wanted[i : i + run] for i in range(len(wanted) - run + 1)}
    return sorted(piece for piece in pieces if piece in folded)


def write_keys(path: Path, keys: Sequence[str]) -> None:
    """Replace the keys file atomically, mode 0600."""
    write_atomic(path, "".join(f"{key}\n" for key in keys).encode())


class Stub:
    """Control and inspection of a running stub over its `/_stub` endpoints."""

    def __init__(self, url: str, keys_file: Path) -> None:
        self.url = url
        self.keys_file = keys_file
        self._http = httpx.Client(base_url=url, timeout=10.0, trust_env=False)

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_stub/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def calls(self, endpoint: str | None = None) -> int:
        stats = self.stats()
        return int(stats["total"] if endpoint is None else stats["calls"].get(endpoint, 0))

    def keys_used(self) -> list[str | None]:
        return [request["key"] for request in self.stats()["requests"]]

    def statuses(self) -> list[int]:
        return [request["status"] for request in self.stats()["requests"]]

    def mode(self, **fields: Any) -> None:
        response = self._http.post("/_stub/mode", json=fields)
        assert response.status_code == 200, response.text

    def reset(self) -> None:
        self._http.post("/_stub/reset").raise_for_status()

    def set_keys(self, *keys: str) -> None:
        write_keys(self.keys_file, keys)

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def stub_process(
    directory: Path, keys: Sequence[str], *, via_env: bool = False, timeout: float = 15.0
) -> Iterator[Stub]:
    """Start `python -m mcp_warden.stub_upstream --port 0` and stop it afterwards.

    The accepted keys go in a 0600 keys file, or with `via_env` in SCAVIO_STUB_KEYS.
    """
    keys_file = directory / "stub-keys"
    argv = [sys.executable, "-m", "mcp_warden.stub_upstream", "--port", "0"]
    if via_env:
        env = cli_env(SCAVIO_STUB_KEYS=",".join(keys))
    else:
        write_keys(keys_file, keys)
        env = cli_env()
        argv += ["--keys-file", str(keys_file)]
    log = directory / "stub.log"
    with background(argv, env=env, log=log) as proc:
        first = _first_line(log, proc, timeout)
        assert first.startswith("listening on 127.0.0.1:"), first
        stub = Stub(f"http://{first.removeprefix('listening on ')}", keys_file)
        try:
            yield stub
        finally:
            stub.close()


def _first_line(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(encoding="utf-8")
        if "\n" in text:
            return text.partition("\n")[0]
        if proc.poll() is not None:
            pytest.fail(f"stub exited with {proc.returncode}: {text}")
        if time.monotonic() > deadline:
            pytest.fail(f"stub printed no port within {timeout} s")
        time.sleep(0.02)
