"""A throwaway mcp-warden deployment for server tests (clients: `mcp_warden.demo.harness`).

with deployment(tmp_path) as lab:     # master key, signing key, the stub's key stored
                                      # encrypted, the stub upstream running, sqlite denylist
    with lab.serve() as server:       # `mcp-warden serve` as a real process on lab.port
        token = lab.mint(["web_search"])
        run(lambda: call_http(server.url, token, "web_search", {"query": "q"}))
        lab.cli("token", "revoke", "-", input=token)   # another process

Tokens are minted in-process with the issuer's own function (the CLI path
is tested in tests/tokens); everything an operator does while the server
runs (revoke, rotate) goes through the CLI as a separate process.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import (
    Stub,
    background,
    cli_env,
    free_port,
    run_cli,
    stub_process,
    wait_for_line,
)
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir
from tests.support.credentials import new_master_key
from tests.support.stub import new_api_key
from tests.support.tokens import forge

T = TypeVar("T")
ISSUER = "mcp-warden"
BANNER = "mcp-warden: serving on "
CREDENTIAL = "scavio_api_key"


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one async test body to completion (the tests themselves stay sync)."""
    return anyio.run(fn)


@dataclass
class Served:
    """A running `mcp-warden serve` process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class Deployment:
    """Keys, an encrypted credential store and a running stub, all under `root`."""

    root: Path
    stub: Stub
    api_key: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def audience(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    def cli(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `mcp-warden ARGS` as another process with this deployment's settings."""
        return run_cli(args, {**self.env, **(env or {})}, input=input)

    def mint(
        self, tools: Sequence[str], *, ttl: int = 600, sub: str = "alice", aud: str | None = None
    ) -> str:
        return mint(
            self.root / "keys",
            issuer=ISSUER,
            sub=sub,
            tools=tools,
            ttl=ttl,
            audience=aud or self.audience,
        )

    def forge(self, key: Ed25519PrivateKey | None = None, **claims: Any) -> str:
        """A token with these claim changes, signed by the issuer's key (or `key`)."""
        kid, signing_key = KeyDir(self.root / "keys").signing_key()
        now = int(time.time())
        doc = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": f"forged-{now}-{id(claims)}",
            "tools": ["web_search"],
            **claims,
        }
        header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
        return forge(key or signing_key, header, doc)

    def revoke(self, token: str) -> None:
        done = self.cli("token", "revoke", "-", input=token)
        assert done.returncode == 0, done.stderr

    def rotate_key(self) -> str:
        """`cred rotate` to a new API key that only the stub then accepts; returns it."""
        new = new_api_key()
        done = self.cli("cred", "rotate", CREDENTIAL, input=new + "\n")
        assert done.returncode == 0, done.stderr
        self.stub.set_keys(new)
        self.api_key = new
        return new

    @contextlib.contextmanager
    def serve(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 20.0
    ) -> Iterator[Served]:
        """`mcp-warden serve --port PORT ARGS` until the block ends (then SIGTERM)."""
        argv = [sys.executable, "-m", "mcp_warden", "serve", "--port", str(self.port), *args]
        log = self.root / f"serve-{time.monotonic_ns()}.log"
        with background(argv, env={**self.env, **(env or {})}, log=log) as proc:
            wait_for_line(log, proc, BANNER, timeout)
            yield Served(self.audience, proc, log)


@contextlib.contextmanager
def deployment(root: Path, **env: str) -> Iterator[Deployment]:
    """A fresh deployment in `root` with the stub running; `env` adds settings."""
    master = new_master_key()
    api_key = new_api_key()
    KeyDir(root / "keys").new()
    store = CredentialStore(root / "mcp_credentials.enc", parse_key(master))
    store.set(CREDENTIAL, api_key)
    with stub_process(root, keys=[api_key]) as stub:
        lab = Deployment(root, stub, api_key, free_port())
        lab.env = cli_env(
            {
                "MCP_ENCRYPTION_KEY": master,
                "MCP_CREDENTIALS_FILE": str(root / "mcp_credentials.enc"),
                "MCP_ROTATION_LOG": str(root / "rotation_log.jsonl"),
                "MCP_KEYS_DIR": str(root / "keys"),
                "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
                "MCP_TOKEN_AUDIENCE": lab.audience,
                "MCP_AUDIT_LOG": str(lab.audit_log),
                "MCP_ACTOR": "tester@ci",
                "SCAVIO_BASE_URL": stub.url,
                **env,
            }
        )
        yield lab


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def refused_starts(
    env: Mapping[str, str], cases: Mapping[str, tuple[Sequence[str], Mapping[str, str]]]
) -> dict[str, str]:
    """Start `mcp-warden serve ARGS` with `env` and each case's settings, all at once.

    Together, each pays the SDK import once, in parallel. Each case, keyed by the
    words its error must hold, must exit 2 with that one line on stderr and print
    nothing on stdout; returns each case's stderr.
    """
    procs = {
        words: subprocess.Popen(
            [sys.executable, "-m", "mcp_warden", "serve", *args],
            env={**env, **extra},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for words, (args, extra) in cases.items()
    }
    errors = {}
    for words, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, (words, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("mcp-warden: ")
        assert words in lines[0]
        assert stdout == ""
        errors[words] = stderr
    return errors
