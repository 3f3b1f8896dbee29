"""The official TypeScript SDK clients get their own tokens from `mcp-warden issuer serve`.

Real processes (tests/issuer/stack.py): the issuer over TLS (the test CA,
trusted by Node through NODE_EXTRA_CA_CERTS), `mcp-warden serve` with
MCP_TOKEN_ISSUER = the issuer URL and MCP_JWKS = its jwks_uri, the stub
upstream. Node runs node/oauth_client.mjs with both SDK lines users have:
`@modelcontextprotocol/sdk` 1.x and `@modelcontextprotocol/client` 2.x, each
with its `ClientCredentialsProvider` (client_secret_basic) and
`PrivateKeyJwtProvider` (1.x: an ES256 PEM key; 2.x: an EdDSA JWK: the SDKs
import a PEM only for RS/ES/PS). The client starts with no token, discovers
the issuer from the server's 401, fetches a token and calls `web_search`;
then `extract_url`: the server's 403 insufficient_scope names the tool and
the SDK asks the issuer again. It succeeds once the operator has allowed the
client that tool (`clients set`, while the client runs); when not, the client
gets an error and the upstream never sees an extract call.

What differs between the lines (measured here, README "Connecting SDK
clients to an issuer-protected server"): 1.x asks for no scope, so the issuer grants all of
the client's tools, and its step-up re-fetches the same way; after a step-up
that did not help it stops with "Server returned 403 after trying upscoping".
2.x asks for the union of its scopes and the challenged tool; after a step-up
that did not help it stops with an SdkHttpError (403) whose text is the
server's error naming the tool; with `onInsufficientScope: "throw"` the 403
is an `InsufficientScopeError` whose `requiredScope` is the tool.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.shared.auth import OAuthMetadata
from pydantic import ValidationError

from mcp_warden.demo.harness import cli_env
from tests.issuer.stack import KeyClient, Stack, protected_by_issuer
from tests.support.procs import NODE_DIR, node_bin, run_node

EXTRACT = "/api/v1/extract"
SEARCH = {"name": "web_search", "arguments": {"query": "typescript oauth"}}
EXTRACT_CALL = {"name": "extract_url", "arguments": {"url": "https://example.com/"}}
LINES = ["1", "2"]
METHODS = ["client_secret_basic", "private_key_jwt"]
NOT_NAMED = "tool 'extract_url' is not available with this token"
_names = itertools.count()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    node_bin()  # skip (or fail in CI) before starting anything when Node is missing
    with protected_by_issuer(tmp_path_factory.mktemp("node-oauth")) as stack:
        yield stack


class NodeClient:
    """node/oauth_client.mjs as a running process: the plan in, pauses answered, JSON out."""

    def __init__(self, stack: Stack, plan: dict[str, Any], secrets: dict[str, str]) -> None:
        env = cli_env({"NODE_EXTRA_CA_CERTS": str(stack.lab.pki.ca_file), **secrets})
        self.proc = subprocess.Popen(
            [node_bin(), str(NODE_DIR / "oauth_client.mjs"), stack.url],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._drain, daemon=True),  # never a full stderr pipe
        ]
        for reader in self._readers:
            reader.start()
        self._send(json.dumps(plan))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 60.0) -> dict[str, Any]:
        """The next JSON line the driver prints (bounded wait)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            pytest.fail(f"node printed nothing within {timeout} s")
        if line is None:
            self.proc.wait(10)
            pytest.fail(f"node exited ({self.proc.returncode}) early: {''.join(self._stderr)}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def resume(self) -> None:
        self._send("go")

    def result(self) -> dict[str, Any]:
        out = self.next()
        assert self.proc.wait(10) == 0
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for reader in self._readers:  # both reach the end of their pipe once node is gone
            reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def start(
    stack: Stack, line: str, method: str, tools: list[str], steps: list[dict[str, Any]], **plan: Any
) -> tuple[str, NodeClient]:
    """Register a client (`clients add`) and start the driver for it; (client_id, driver)."""
    name = f"ts{line}-{method}-{next(_names)}"
    if method == "client_secret_basic":
        registered = stack.lab.add_client(name, tools)
        assert registered.secret is not None
        client_id, secrets = registered.client_id, {"MCP_CLIENT_SECRET": registered.secret}
        extra: dict[str, Any] = {}
    else:
        key: KeyClient = (
            stack.add_es256_client(name, tools)
            if line == "1"
            else stack.add_eddsa_client(name, tools)
        )
        client_id, secrets = key.client_id, {"MCP_CLIENT_KEY": key.private_key}
        extra = {"alg": key.alg}
    plan = {
        "line": line,
        "issuer": stack.lab.issuer_url,
        "clientId": client_id,
        "method": method,
        "steps": steps,
        **extra,
        **plan,
    }
    return client_id, NodeClient(stack, plan, secrets)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("line", LINES)
def test_step_up_succeeds_once_the_client_may_use_the_tool(
    stack: Stack, line: str, method: str
) -> None:
    extracts = stack.server.stub.calls(EXTRACT)
    client_id, node = start(
        stack, line, method, ["web_search"], [SEARCH, {"pause": "allow"}, EXTRACT_CALL]
    )
    try:
        assert node.next() == {"paused": "allow"}
        stack.allow(client_id, "web_search", "extract_url")
        node.resume()
        out = node.result()
    finally:
        node.close()
    assert "error" not in out, out
    search, extract = out["calls"]
    assert search["isError"] is False
    assert "Stub result 1" in search["text"]
    assert extract["isError"] is False, extract
    assert stack.server.stub.calls(EXTRACT) == extracts + 1
    # A token at the 401, a second at the 403 step-up that names the newly allowed tool.
    assert out["tokenRequests"] == 2
    assert stack.issued_to(client_id) == [["web_search"], ["extract_url", "web_search"]]
    assert stack.server_calls(client_id) == [
        ("web_search", "allowed"),
        ("extract_url", "denied"),
        ("extract_url", "allowed"),
    ]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("line", LINES)
def test_step_up_refused_when_the_client_may_not_use_the_tool(
    stack: Stack, line: str, method: str
) -> None:
    extracts = stack.server.stub.calls(EXTRACT)
    client_id, node = start(stack, line, method, ["web_search"], [SEARCH, EXTRACT_CALL])
    try:
        out = node.result()
    finally:
        node.close()
    search, extract = out["calls"]
    assert search["isError"] is False
    error = extract["error"]
    if line == "1":  # StreamableHTTPError: `code` is the HTTP status, the text is the SDK's
        assert (error["code"], error["message"]) == (
            403,
            "Streamable HTTP error: Server returned 403 after trying upscoping",
        )
    else:  # SdkHttpError with the server's answer, which names the tool
        assert (error["type"], error["status"]) == ("SdkHttpError", 403)
        assert "403 insufficient_scope after step-up" in error["message"]
        assert NOT_NAMED in error["text"]
    assert stack.server.stub.calls(EXTRACT) == extracts
    # The step-up asked again; the issuer granted only what the client may have.
    assert stack.issued_to(client_id) == [["web_search"], ["web_search"]]
    assert stack.server_calls(client_id) == [
        ("web_search", "allowed"),
        ("extract_url", "denied"),
        ("extract_url", "denied"),
    ]


@pytest.mark.parametrize("method", METHODS)
def test_2x_insufficient_scope_error_names_the_tool(stack: Stack, method: str) -> None:
    extracts = stack.server.stub.calls(EXTRACT)
    client_id, node = start(
        stack, "2", method, ["web_search"], [SEARCH, EXTRACT_CALL], onInsufficientScope="throw"
    )
    try:
        out = node.result()
    finally:
        node.close()
    error = out["calls"][1]["error"]
    assert (error["type"], error["requiredScope"]) == ("InsufficientScopeError", "extract_url")
    assert error["message"] == 'Insufficient scope: required "extract_url"'
    assert stack.server.stub.calls(EXTRACT) == extracts
    assert out["tokenRequests"] == 1  # the application decides; the SDK did not step up
    assert stack.issued_to(client_id) == [["web_search"]]


def test_what_each_sdk_client_demands_of_the_issuer_metadata(stack: Stack) -> None:
    """The issuer's RFC 8414 document as each SDK client parses it, and what breaks it.

    Both TypeScript lines reject metadata without `authorization_endpoint` or
    `response_types_supported` (RFC 8414 lists both as required; an empty
    list is accepted), and 2.x one whose `issuer` is not exactly the URL it
    was discovered at (RFC 8414 section 3.3). The Python client needs
    `authorization_endpoint` too: without it the document does not validate
    and the client finds no metadata for the issuer.
    """
    served = stack.issuer.http.get(
        stack.issuer.url + "/.well-known/oauth-authorization-server"
    ).json()
    variants = {
        "served": served,
        "no_authorization_endpoint": without(served, "authorization_endpoint"),
        "no_response_types_supported": without(served, "response_types_supported"),
        "issuer_with_slash": {**served, "issuer": served["issuer"] + "/"},
    }
    plan = {"issuer": stack.lab.issuer_url, "documents": variants}
    done = run_node("as_metadata.mjs", input=json.dumps(plan))
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(done.stdout)
    accepted = {line: {n for n, v in verdicts[line].items() if v == "accepted"} for line in LINES}
    assert accepted == {"1": {"served", "issuer_with_slash"}, "2": {"served"}}
    for line in LINES:
        assert "authorization_endpoint" in verdicts[line]["no_authorization_endpoint"]
        assert "response_types_supported" in verdicts[line]["no_response_types_supported"]
    assert "Issuer mismatch" in verdicts["2"]["issuer_with_slash"]
    OAuthMetadata.model_validate(served)
    with pytest.raises(ValidationError, match="authorization_endpoint"):
        OAuthMetadata.model_validate(variants["no_authorization_endpoint"])


def without(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != name}
