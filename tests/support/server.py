"""A throwaway mcp-warden deployment for server tests, and clients to drive it.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir
from tests.support.credentials import new_key as new_master_key
from tests.support.procs import background, cli_env, free_port, run_cli
from tests.support.stub import Stub, new_key, stub_process
from tests.support.tokens import forge

T = TypeVar("T")
ISSUER = "mcp-warden"
BANNER = "mcp-warden: serving on "
CREDENTIAL = "scavio_api_key"
LEGACY_VERSION = "2025-11-25"  # a handshake-era protocol version: plain stateless JSON-RPC POSTs


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
        new = new_key()
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
    api_key = new_key()
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


def wait_for_line(
    log: Path, proc: subprocess.Popen[bytes], prefix: str, timeout: float = 20.0
) -> str:
    """The first line of `log` starting with `prefix`, waiting for it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode} before {prefix!r}: {text}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {prefix!r} within {timeout} s: {text}")
        time.sleep(0.05)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- clients ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def mcp_http(url: str, token: str | None) -> AsyncIterator[Client]:
    """The official Python MCP client over streamable HTTP, with a bearer header."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30.0) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def call_http(
    url: str, token: str | None, tool: str, arguments: dict[str, Any]
) -> CallToolResult:
    """One tools/call; a JSON-RPC error is raised as MCPError (not inside a task group's group)."""
    try:
        async with mcp_http(url, token) as client:
            return await client.call_tool(tool, arguments)
    except BaseException as exc:
        found = mcp_error(exc)
        if found is None:
            raise
        raise found from None


def mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError in `exc` or in the exception groups around it."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = mcp_error(inner)
            if found is not None:
                return found
    return None


def post(
    url: str,
    message: object,
    token: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One raw JSON-RPC POST (stateless, handshake-era version: no initialize needed)."""
    sent = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": LEGACY_VERSION,
        **({"Authorization": f"Bearer {token}"} if token is not None else {}),
        **(headers or {}),
    }
    with httpx.Client(timeout=30.0, trust_env=False) as http:
        return http.post(url, content=json.dumps(message).encode(), headers=sent)


def tools_call(name: str, arguments: dict[str, Any] | None = None, id: int = 1) -> dict[str, Any]:
    """A tools/call JSON-RPC request."""
    params = {"name": name, "arguments": arguments or {}}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}
