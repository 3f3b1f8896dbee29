"""`mcp-warden demo`: the whole flow, offline, in a throwaway directory.

Everything runs as it would for an operator: the `mcp-warden` commands are
real processes (keygen, keys new, cred set, token mint/revoke, cred rotate),
the server is `mcp-warden serve` on a free 127.0.0.1 port, the upstream is
the Scavio-compatible stub (`python -m mcp_warden.stub_upstream`), and the
client is the official `mcp` Python client over streamable HTTP. The
directory, both processes and every secret in them are gone at the end,
also after an error or Ctrl-C. Nothing secret is printed: no master key, no
API key, no token (only its jti).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import httpx

from mcp_warden.credentials.files import write_atomic
from mcp_warden.errors import WardenError
from mcp_warden.stub_upstream import key_id

QUERY = "MCP server security best practices 2026"
CREDENTIAL = "scavio_api_key"
START_TIMEOUT = 30.0


class DemoFailed(WardenError):
    """A demo step did not do what it should; the message says which and why."""


@click.command()
def demo() -> None:
    """Run the whole flow on an offline stub upstream, in a directory removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mcp-warden-demo-"))
    try:
        with Demo(root) as flow:
            flow.run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    say(f"\nStopped the server and the stub; removed {root}.")
    say(REAL_API)


REAL_API = """
The upstream above was an offline stub that imitates the Scavio Search API, not the real
service. To serve the real API (SCAVIO_BASE_URL defaults to https://api.scavio.dev):
  export MCP_ENCRYPTION_KEY=$(mcp-warden keygen)   # keep it secret, outside the repository
  mcp-warden cred set scavio_api_key               # paste your key from https://scavio.dev
  mcp-warden keys new
  mcp-warden serve                                 # http://127.0.0.1:8000/mcp
  mcp-warden token mint --tools web_search --ttl 3600 --sub you"""


def say(text: str) -> None:
    click.echo(text)


class Demo:
    """The throwaway deployment: settings, the two processes, the steps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "SCAVIO_"))}
        self.env.update(
            {
                "MCP_CREDENTIALS_FILE": str(root / "mcp_credentials.enc"),
                "MCP_ROTATION_LOG": str(root / "rotation_log.jsonl"),
                "MCP_KEYS_DIR": str(root / "keys"),
                "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
                "MCP_TOKEN_AUDIENCE": self.url,
                "MCP_AUDIT_LOG": str(root / "audit.jsonl"),
                "MCP_ACTOR": "demo",
            }
        )
        self.stub_keys = root / "stub-keys"
        self.stub_url = ""
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for proc in reversed(self._procs):
            _stop(proc)

    # -- the flow -------------------------------------------------------------

    def run(self) -> None:
        say("mcp-warden demo: the whole flow against an offline stub upstream (no network)")
        say(f"working in {self.root} (removed at the end)")

        step(1, "Master key", "mcp-warden keygen")
        self.env["MCP_ENCRYPTION_KEY"] = self.cli("keygen").strip()
        say("   MCP_ENCRYPTION_KEY set for this demo (not shown)")

        step(2, "Signing key", "mcp-warden keys new")
        say(f"   Ed25519 key {self.cli('keys', 'new').strip()[:12]}... published in keys/jwks.json")

        step(3, "The upstream API key, stored encrypted", f"mcp-warden cred set {CREDENTIAL}")
        api_key = "sk_demo_" + secrets.token_urlsafe(24)
        self.cli("cred", "set", CREDENTIAL, input=api_key + "\n")
        say("   stored AES-256-GCM encrypted in mcp_credentials.enc")

        step(4, "Upstream: the offline Scavio stub", "python -m mcp_warden.stub_upstream --port 0")
        self.start_stub(api_key)
        say(f"   listening on {self.stub_url} (SCAVIO_BASE_URL); it accepts only the stored key")

        step(5, "Server", f"mcp-warden serve --port {self.port}")
        self.start_server()
        say(f"   serving on {self.url}")

        mint = ("token", "mint", "--tools", "web_search", "--ttl", "600", "--sub", "demo-user")
        step(6, "A token for web_search only", "mcp-warden " + " ".join(mint))
        token = self.cli(*mint).strip()
        say(f"   minted (jti {_jti(token)}; the token itself is not shown)")

        step(7, "web_search through the MCP Python client over HTTP (Authorization: Bearer)")
        say(f"   query: {QUERY!r}")
        say(f"   Results: {self.search(token)}")

        step(8, "extract_url with the same token")
        say(
            f"   refused before it runs; {self.refused(token, 'extract_url', {'url': 'https://x.y'})}"
        )
        extracts = self.stub_calls().get("/api/v1/extract", 0)
        if extracts:
            raise DemoFailed("step 8: an extract_url call reached the upstream")
        say("   the upstream received no extract_url call")

        step(9, "Revoke the token", "mcp-warden token revoke -   (the token on stdin)")
        self.cli("token", "revoke", "-", input=token)
        say(f"   {self.revoked(token)}")

        step(10, "Rotate the API key while the server runs", f"mcp-warden cred rotate {CREDENTIAL}")
        fresh = self.cli(*mint).strip()
        new_key = "sk_demo_" + secrets.token_urlsafe(24)
        self.cli("cred", "rotate", CREDENTIAL, input=new_key + "\n")
        _write_keys(self.stub_keys, [new_key])  # from now on the stub refuses the old key
        results = self.search(fresh)
        seen = self.stub_keys_used()[-1]
        if seen != key_id(new_key):
            raise DemoFailed("step 10: the server did not send the rotated key upstream")
        say(f"   next call with a new token: Results: {results}")
        say(f"   the stub received key sha256:{seen}..., the new one: no restart needed")

        say(
            "\nAudit log, one JSON line per tools/call and per refused request "
            "(no token, key or query in it):"
        )
        for line in (self.root / "audit.jsonl").read_text(encoding="utf-8").splitlines():
            say(f"   {line}")

    # -- the parts ------------------------------------------------------------

    def cli(self, *args: str, input: str | None = None) -> str:
        """Run `mcp-warden ARGS`; its stdout, or DemoFailed with its one-line error."""
        done = subprocess.run(
            [sys.executable, "-m", "mcp_warden", *args],
            env=self.env,
            input=input or "",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DemoFailed(
                f"`mcp-warden {args[0]} {args[1] if len(args) > 1 else ''}` failed: {last}"
            )
        return done.stdout

    def start_stub(self, api_key: str) -> None:
        _write_keys(self.stub_keys, [api_key])
        argv = ["-m", "mcp_warden.stub_upstream", "--port", "0", "--keys-file", str(self.stub_keys)]
        log = self.root / "stub.log"
        proc = self._start(argv, log)
        line = _wait_line(proc, log, "listening on ")
        self.stub_url = "http://" + line.removeprefix("listening on ")
        self.env["SCAVIO_BASE_URL"] = self.stub_url

    def start_server(self) -> None:
        log = self.root / "serve.log"
        proc = self._start(["-m", "mcp_warden", "serve", "--port", str(self.port)], log)
        _wait_line(proc, log, "mcp-warden: serving on ")

    def search(self, token: str) -> int:
        result = mcp_call(self.url, token, "web_search", {"query": QUERY})
        if result.get("isError") or "results" not in result:
            raise DemoFailed(f"web_search failed: {result.get('text', 'no result')}")
        return len(result["results"])

    def refused(self, token: str, tool: str, arguments: dict[str, Any]) -> str:
        result = mcp_call(self.url, token, tool, arguments)
        if "error" not in result:
            raise DemoFailed(f"{tool} was not refused")
        status, challenge = http_post(self.url, token, "tools/call", tool, arguments)
        return (
            f"the MCP client gets: {result['error']}\n"
            f"   the same call as a plain POST: HTTP {status}, WWW-Authenticate: {challenge}"
        )

    def revoked(self, token: str) -> str:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            status, challenge = http_post(self.url, token, "tools/list")
            if status == 401:
                description = challenge.split('error_description="', 1)[-1].split('"', 1)[0]
                return f"the server now answers HTTP 401: {description}"
            time.sleep(0.1)
        raise DemoFailed("step 9: the server still accepted the revoked token after 5 s")

    def stub_calls(self) -> Mapping[str, int]:
        calls: Mapping[str, int] = self._stub_stats()["calls"]
        return calls

    def stub_keys_used(self) -> list[str]:
        return [str(request["key"]) for request in self._stub_stats()["requests"]]

    def _stub_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.stub_url}/_stub/stats", trust_env=False).json()
        return stats

    def _start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped by us, in order, even after Ctrl-C
            )
        self._procs.append(proc)
        return proc


def mcp_call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tools/call with the official MCP Python client: the structured result or the error."""
    import anyio  # noqa: PLC0415  (the SDK loads only when the demo calls it)
    import httpx2  # noqa: PLC0415
    from mcp import Client  # noqa: PLC0415
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415
    from mcp.shared.exceptions import MCPError  # noqa: PLC0415

    async def call() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30.0) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            try:
                result = await client.call_tool(tool, arguments)
            except MCPError as exc:
                return {"error": exc.error.message}
            text = " ".join(getattr(part, "text", "") for part in result.content)
            return {**(result.structured_content or {}), "isError": result.is_error, "text": text}

    return anyio.run(call)


def http_post(
    url: str, token: str, method: str, tool: str = "", arguments: dict[str, Any] | None = None
) -> tuple[int, str]:
    """One raw JSON-RPC POST (tools/list, or tools/call of `tool`): status, WWW-Authenticate."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if method == "tools/call":
        message["params"] = {"name": tool, "arguments": arguments or {}}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    response = httpx.post(url, json=message, headers=headers, timeout=30.0, trust_env=False)
    return response.status_code, response.headers.get("www-authenticate", "")


def step(number: int, title: str, command: str = "") -> None:
    say(f"\n{number:>2}. {title}")
    if command:
        say(f"   $ {command}")


def _wait_line(proc: subprocess.Popen[bytes], log: Path, prefix: str) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines:
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            raise DemoFailed(f"a demo process stopped before it was ready: {last}")
        time.sleep(0.05)
    raise DemoFailed(f"a demo process was not ready within {START_TIMEOUT:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_keys(path: Path, keys: list[str]) -> None:
    """The stub's accepted keys, replaced atomically, mode 0600."""
    write_atomic(path, "".join(f"{key}\n" for key in keys).encode())


def _jti(token: str) -> str:
    """The token's jti, for display (decoded, not verified: the server verifies)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return str(claims.get("jti", "?"))
