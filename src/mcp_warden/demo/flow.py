"""`mcp-warden demo`: the whole flow, offline, in a throwaway directory.

Everything runs as it would for an operator: the `mcp-warden` commands are
real processes (keygen, keys new, cred set, token mint/revoke, cred rotate,
clients add/set), the server is `mcp-warden serve` on a free 127.0.0.1 port,
the upstream is the Scavio-compatible stub (`python -m mcp_warden.demo.stub`),
the issuer is `mcp-warden issuer serve` (plain http: loopback only), and the
client is the official `mcp` Python client over streamable HTTP (all through
`demo.harness`, which the tests use too), first with minted tokens, then
fetching its own from the issuer (`demo.oauth`). The directory, both processes and
every secret in them are gone at the end, also after an error or Ctrl-C.
Nothing secret is printed: no master key, no API key, no token (only its jti),
no client secret.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import click

from mcp_warden.config import Settings
from mcp_warden.demo import oauth
from mcp_warden.demo.harness import (
    background,
    call_http,
    cli_env,
    free_port,
    mcp_error,
    post,
    run_cli,
    stub_process,
    tools_call,
    wait_for_line,
)
from mcp_warden.demo.stub import key_id
from mcp_warden.errors import WardenError
from mcp_warden.tokens.jws import b64url_decode

QUERY = "MCP server security best practices 2026"
PAGE = "https://modelcontextprotocol.io/specification"
CREDENTIAL = Settings().scavio_credential  # the default name: the demo sets no MCP_ variable for it
START = 30.0
"""Seconds the stub and the server get to start (a busy machine is slow)."""


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
    say(f"\nStopped the server, the issuer and the stub; removed {root}.")
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
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.issuer_port = free_port()
        self.issuer = f"http://127.0.0.1:{self.issuer_port}"
        self.env = cli_env(
            {
                "MCP_CREDENTIALS_FILE": str(root / "mcp_credentials.enc"),
                "MCP_ROTATION_LOG": str(root / "rotation_log.jsonl"),
                "MCP_KEYS_DIR": str(root / "keys"),
                "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
                "MCP_TOKEN_AUDIENCE": self.url,
                # The issuer of every token: `token mint` here, `issuer serve` from step 11 on.
                # The server's RFC 9728 metadata names it; it reads the issuer's public keys
                # from keys/jwks.json (one machine; replicas set MCP_JWKS to its https jwks_uri).
                "MCP_TOKEN_ISSUER": self.issuer,
                "MCP_CLIENTS_URL": f"sqlite:///{root / 'clients.db'}",
                "MCP_AUDIT_LOG": str(root / "audit.jsonl"),
                "MCP_ACTOR": "demo",
            }
        )
        self._running = contextlib.ExitStack()  # the stub and the server, stopped in reverse

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._running.close()

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

        step(4, "Upstream: the offline Scavio stub", "python -m mcp_warden.demo.stub --port 0")
        stub = self._running.enter_context(stub_process(self.root, [api_key], timeout=START))
        self.env["SCAVIO_BASE_URL"] = stub.url
        say(f"   listening on {stub.url} (SCAVIO_BASE_URL); it accepts only the stored key")

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
        if stub.calls("/api/v1/extract"):
            raise DemoFailed("step 8: an extract_url call reached the upstream")
        say("   the upstream received no extract_url call")

        step(9, "Revoke the token", "mcp-warden token revoke -   (the token on stdin)")
        self.cli("token", "revoke", "-", input=token)
        say(f"   {self.revoked(token)}")

        step(10, "Rotate the API key while the server runs", f"mcp-warden cred rotate {CREDENTIAL}")
        fresh = self.cli(*mint).strip()
        new_key = "sk_demo_" + secrets.token_urlsafe(24)
        self.cli("cred", "rotate", CREDENTIAL, input=new_key + "\n")
        stub.set_keys(new_key)  # from now on the stub refuses the old key
        results = self.search(fresh)
        seen = stub.keys_used()[-1]
        if seen != key_id(new_key):
            raise DemoFailed("step 10: the server did not send the rotated key upstream")
        say(f"   next call with a new token: Results: {results}")
        say(f"   the stub received key sha256:{seen}..., the new one: no restart needed")

        self.own_tokens(stub.calls)

        say(
            "\nAudit log, one JSON line per tools/call and per refused request "
            "(no token, key or query in it):"
        )
        for line in (self.root / "audit.jsonl").read_text(encoding="utf-8").splitlines():
            say(f"   {line}")
        say("\nIssuer audit log, one JSON line per token issued or refused (no secret, no token):")
        for line in (self.root / "issuer-audit.jsonl").read_text(encoding="utf-8").splitlines():
            say(f"   {line}")

    def own_tokens(self, stub_calls: Callable[[str], int]) -> None:
        """Steps 11-14: the issuer service, a registered client, discovery and step-up."""
        step(11, "The issuer service", f"mcp-warden issuer serve --port {self.issuer_port}")
        self.start_issuer()
        say(f"   issuer serving on {self.issuer} (MCP_TOKEN_ISSUER; plain http: loopback only)")
        say("   the server's 401 names its metadata, which names this issuer")

        add = ("clients", "add", "demo-agent", "--tools", "web_search")
        step(12, "Register a client for web_search", "mcp-warden " + " ".join(add))
        registered = json.loads(self.cli(*add))
        client_id, secret = registered["client_id"], registered["client_secret"]
        say(f"   client_id {client_id}; its secret is printed once (not shown here), kept hashed")

        allow = ("clients", "set", client_id, "--tools", "web_search,extract_url")
        before = stub_calls("/api/v1/extract")
        anyio.run(self.client_session, client_id, secret, allow)
        if stub_calls("/api/v1/extract") != before + 1:
            raise DemoFailed("step 14: the upstream did not receive exactly one extract_url call")

    async def client_session(self, client_id: str, secret: str, allow: tuple[str, ...]) -> None:
        """Steps 13-14 in one MCP session whose tokens the client fetches itself."""
        step(13, "The MCP Python client with no token (ClientCredentialsOAuthProvider)")
        say("   web_search: the client discovers the issuer and fetches a token")
        async with oauth.session(
            self.url, issuer=self.issuer, client_id=client_id, client_secret=secret
        ) as client:
            result = await client.call("web_search", {"query": QUERY})
            show(client.take())
            say(f"   Results: {len((result.structured_content or {}).get('results', []))}")

            say("   extract_url: 403 names the tool; the SDK asks the issuer again (step-up)")
            try:
                refused = await client.call("extract_url", {"url": PAGE})
            except Exception as exc:
                error = mcp_error(exc)
                if error is None:
                    raise
                show(client.take())
                say(f"   the issuer grants only web_search; the client gets: {error.error.message}")
            else:
                raise DemoFailed(f"step 13: extract_url was not refused: {refused.content}")

            step(14, "Allow the client extract_url", "mcp-warden " + " ".join(allow))
            await anyio.to_thread.run_sync(lambda: self.cli(*allow))
            say("   extract_url again, in the same session: the step-up now gets the tool")
            extracted = await client.call("extract_url", {"url": PAGE})
            show(client.take())
            content = (extracted.structured_content or {}).get("content", "")
            if extracted.is_error or not content:
                raise DemoFailed("step 14: extract_url failed after the step-up")
            say(f"   Extracted {len(content)} characters of {PAGE} (no token was minted)")

    # -- the parts ------------------------------------------------------------

    def cli(self, *args: str, input: str | None = None) -> str:
        """Run `mcp-warden ARGS`; its stdout, or DemoFailed with its one-line error."""
        done = run_cli(args, self.env, input=input)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DemoFailed(
                f"`mcp-warden {args[0]} {args[1] if len(args) > 1 else ''}` failed: {last}"
            )
        return done.stdout

    def start_issuer(self) -> None:
        log = self.root / "issuer.log"
        argv = [sys.executable, "-m", "mcp_warden", "issuer", "serve"]
        argv += ["--port", str(self.issuer_port)]
        env = {**self.env, "MCP_AUDIT_LOG": str(self.root / "issuer-audit.jsonl")}
        proc = self._running.enter_context(background(argv, env=env, log=log))
        wait_for_line(log, proc, "mcp-warden: issuer serving on ", START)

    def start_server(self) -> None:
        log = self.root / "serve.log"
        argv = [sys.executable, "-m", "mcp_warden", "serve", "--port", str(self.port)]
        proc = self._running.enter_context(background(argv, env=self.env, log=log))
        wait_for_line(log, proc, "mcp-warden: serving on ", START)

    def search(self, token: str) -> int:
        result = anyio.run(call_http, self.url, token, "web_search", {"query": QUERY})
        structured = result.structured_content or {}
        if result.is_error or "results" not in structured:
            text = " ".join(getattr(part, "text", "") for part in result.content)
            raise DemoFailed(f"web_search failed: {text or 'no result'}")
        return len(structured["results"])

    def refused(self, token: str, tool: str, arguments: dict[str, Any]) -> str:
        try:
            anyio.run(call_http, self.url, token, tool, arguments)
        except Exception as exc:
            error = mcp_error(exc)
            if error is None:
                raise
        else:
            raise DemoFailed(f"{tool} was not refused")
        response = post(self.url, tools_call(tool, arguments), token)
        return (
            f"the MCP client gets: {error.error.message}\n"
            f"   the same call as a plain POST: HTTP {response.status_code}, "
            f"WWW-Authenticate: {response.headers.get('www-authenticate', '')}"
        )

    def revoked(self, token: str) -> str:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            response = post(self.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token)
            if response.status_code == 401:
                challenge = response.headers.get("www-authenticate", "")
                description = challenge.split('error_description="', 1)[-1].split('"', 1)[0]
                return f"the server now answers HTTP 401: {description}"
            time.sleep(0.1)
        raise DemoFailed("step 9: the server still accepted the revoked token after 5 s")


def show(exchanges: list[str]) -> None:
    """The client's HTTP exchanges, one per line (the issuer's as its full URL)."""
    for line in exchanges:
        say(f"     {line}")


def step(number: int, title: str, command: str = "") -> None:
    say(f"\n{number:>2}. {title}")
    if command:
        say(f"   $ {command}")


def _jti(token: str) -> str:
    """The token's jti, for display (decoded, not verified: the server verifies)."""
    claims: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return str(claims.get("jti", "?"))
