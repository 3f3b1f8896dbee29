"""The `examples/` servers as real processes, and an MCP client that sees the HTTP status.

with example_lab(tmp_path) as lab:              # signing key, SQLite denylist, audit log
    with lab.serve(EXAMPLES / "mcpserver_server.py"):  # `python SCRIPT PORT` until the block ends
        token = lab.mint(["add"])
        async with recorded(lab.url, token, answers) as client: ...
        lab.revoke(token)                       # `mcp-warden token revoke` in another process

The examples keep no credentials, so the lab has no master key or store.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_warden.demo.harness import background, cli_env, free_port, run_cli
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir
from tests.support.procs import REPO

EXAMPLES = REPO / "examples"
ISSUER = "mcp-warden"


@dataclass
class Answer:
    """What one HTTP response said, as far as authorization goes."""

    status: int
    challenge: str | None


@dataclass
class ExampleLab:
    """Keys, a denylist and an audit log under `root`, for an example server on `port`."""

    root: Path
    port: int
    url: str  # the audience: http://127.0.0.1:PORT/mcp
    env: dict[str, str]

    @property
    def audit_log(self) -> Path:
        return Path(self.env["MCP_AUDIT_LOG"])

    def mint(self, tools: Sequence[str], *, sub: str = "alice") -> str:
        return mint(
            self.root / "keys", issuer=ISSUER, sub=sub, tools=tools, ttl=600, audience=self.url
        )

    def revoke(self, token: str) -> None:
        done = run_cli(["token", "revoke", "-"], self.env, input=token)
        assert done.returncode == 0, done.stderr

    @contextlib.contextmanager
    def serve(self, script: Path) -> Iterator[subprocess.Popen[bytes]]:
        """`python SCRIPT PORT` with this lab's settings, listening, until the block ends.

        FastMCP reads its port from FASTMCP_PORT rather than argv: both are given.
        """
        log = self.root / f"{script.stem}.log"
        argv = [sys.executable, str(script), str(self.port)]
        env = {**self.env, "FASTMCP_PORT": str(self.port), "FASTMCP_SHOW_SERVER_BANNER": "false"}
        with background(
            argv, env=env, port=self.port, log=log, cwd=self.root, timeout=30.0
        ) as proc:
            yield proc

    @property
    def metadata(self) -> str:
        """The RFC 9728 metadata URL the example's challenges name."""
        return self.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")


@contextlib.contextmanager
def example_lab(root: Path) -> Iterator[ExampleLab]:
    KeyDir(root / "keys").new()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = {
        "MCP_KEYS_DIR": str(root / "keys"),
        "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
        "MCP_TOKEN_AUDIENCE": url,
        "MCP_AUDIT_LOG": str(root / "audit.jsonl"),
    }
    yield ExampleLab(root, port, url, cli_env(env))


@contextlib.asynccontextmanager
async def recorded(url: str, token: str, answers: list[Answer]) -> AsyncIterator[Client]:
    """The official Python MCP client over streamable HTTP; every HTTP answer goes to `answers`.

    An answer is noted even when the client then fails (a 401 at connect).
    """

    async def note(response: httpx2.Response) -> None:
        answers.append(Answer(response.status_code, response.headers.get("www-authenticate")))

    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            event_hooks={"response": [note]},
            timeout=30.0,
        ) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
