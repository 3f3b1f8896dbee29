"""The guard layers in-process: ToolGuard (SDK middleware) through the SDK's in-memory client,
ToolScopeLayer (ASGI) with a recording inner app, and the `guarded` tool wrapper.

The real-process tests (test_http, test_stdio) cover the same rules end to end; these
show each layer holds on its own, which is the point of defence in depth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from starlette.types import Message, Receive, Scope, Send

from mcp_warden.demo.harness import mcp_error
from mcp_warden.errors import WardenError
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import access_token
from mcp_warden.server.grants import (
    Grant,
    Grants,
    Refusal,
    StdioGrant,
    permits,
    tool_refused_message,
)
from mcp_warden.server.guard import ToolGuard, ToolScopeLayer, guarded, visible_tools
from mcp_warden.server.tools import ToolSpec, add_tools
from mcp_warden.tokens.claims import Claims
from tests.support.server import audit_lines, run
from tests.support.tokens import TokenLab

GRANT = Grant("alice", "jti-1", frozenset({"echo"}))


class OutOfCredits(ToolError, WardenError):
    """A tool failure that names its reason, as ScavioError does."""

    reason = "out_of_credits"


class Upstream:
    """Counts the calls that reached the tools (none may, when refused)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def specs(self) -> list[ToolSpec]:
        async def echo(text: str) -> dict[str, str]:
            self.calls.append("echo")
            return {"text": text}

        async def secret() -> dict[str, str]:
            self.calls.append("secret")
            return {"text": "must not run"}

        async def failing() -> dict[str, str]:
            self.calls.append("failing")
            raise OutOfCredits("upstream said no")

        return [ToolSpec("echo", "Echo.", echo), ToolSpec("secret", "Hidden.", secret),
                ToolSpec("failing", "Fails.", failing)]  # fmt: skip


def server_with(
    upstream: Upstream, audit: AuditLog, grants: Any = lambda ctx: GRANT, *, guard: bool = True
) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "t", middleware=[ToolGuard(grants, audit)] if guard else [], log_level="WARNING"
    )
    add_tools(server, upstream.specs(), wrap=lambda spec: guarded(spec.name, spec.fn))
    return server


async def call(server: MCPServer[Any], tool: str, args: dict[str, Any]) -> Any:
    """The result, or the MCPError it was refused with (even at connect)."""
    try:
        async with Client(server) as client:
            return await client.call_tool(tool, args)
    except BaseException as exc:
        found = mcp_error(exc)
        if found is None:
            raise
        return found


def test_permits_is_exact() -> None:
    assert permits(GRANT, "echo")
    for name in ("Echo", "echo ", "ech", "*", None, 1, ["echo"]):
        assert not permits(GRANT, name)


def test_refusal_text_does_not_depend_on_the_tool_existing() -> None:
    assert tool_refused_message("usage").replace("usage", "X") == tool_refused_message(
        "nosuch"
    ).replace("nosuch", "X")
    assert len(tool_refused_message("x" * 10_000)) < 250


def test_tools_list_is_filtered_and_other_tools_never_run(tmp_path: Path) -> None:
    upstream, audit = Upstream(), AuditLog.open(tmp_path / "audit.jsonl")
    server = server_with(upstream, audit)

    async def scenario() -> tuple[list[str], Any, Any, Any]:
        async with Client(server) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
        return (
            names,
            await call(server, "echo", {"text": "hi"}),
            await call(server, "secret", {}),
            await call(server, "nosuch", {}),
        )

    names, allowed, hidden, missing = run(scenario)
    assert names == ["echo"]
    assert allowed.structured_content == {"text": "hi"}
    assert isinstance(hidden, MCPError)
    assert isinstance(missing, MCPError)
    assert (hidden.error.code, missing.error.code) == (-32602, -32602)
    assert hidden.error.message == tool_refused_message("secret")
    assert upstream.calls == ["echo"]
    outcomes = [(line["tool"], line["outcome"], line.get("reason")) for line in audit_lines(
        tmp_path / "audit.jsonl")]  # fmt: skip
    assert outcomes == [
        ("echo", "allowed", None),
        ("secret", "denied", "tool_not_allowed"),
        ("nosuch", "denied", "tool_not_allowed"),
    ]


def test_tool_failure_reason_reaches_the_audit_line(tmp_path: Path) -> None:
    upstream, audit = Upstream(), AuditLog.open(tmp_path / "audit.jsonl")
    grants = lambda ctx: Grant("bob", "j", frozenset({"echo", "failing"}))  # noqa: E731
    server = server_with(upstream, audit, grants)
    failed = run(lambda: call(server, "failing", {}))
    bad_args = run(lambda: call(server, "echo", {"text": 5}))
    assert failed.is_error
    assert bad_args.is_error
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert [(line["outcome"], line["reason"]) for line in lines] == [
        ("error", "out_of_credits"),
        ("error", "invalid_arguments"),
    ]


def test_a_plain_function_tool_is_guarded_and_reports_why_it_failed(tmp_path: Path) -> None:
    calls: list[str] = []

    def shout(text: str) -> str:  # not async: the SDK runs it in a worker thread
        calls.append(text)
        if text == "fail":
            raise OutOfCredits("upstream said no")
        return text.upper()

    audit = AuditLog.open(tmp_path / "audit.jsonl")
    grant = Grant("bob", "j", frozenset({"shout"}))
    guarded_server: MCPServer[Any] = MCPServer(
        "t", middleware=[ToolGuard(lambda ctx: grant, audit)], log_level="WARNING"
    )
    bare_server: MCPServer[Any] = MCPServer("t", log_level="WARNING")
    for server in (guarded_server, bare_server):
        server.add_tool(guarded("shout", shout), name="shout")
    shouted = run(lambda: call(guarded_server, "shout", {"text": "hi"}))
    failed = run(lambda: call(guarded_server, "shout", {"text": "fail"}))
    unguarded = run(lambda: call(bare_server, "shout", {"text": "no"}))
    assert shouted.structured_content == {"result": "HI"}
    assert failed.is_error
    assert unguarded.is_error
    assert calls == ["hi", "fail"]
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert [(line["outcome"], line.get("reason")) for line in lines] == [
        ("allowed", None),
        ("error", "out_of_credits"),
    ]


def test_a_guarded_tool_never_runs_without_the_guard(tmp_path: Path) -> None:
    upstream = Upstream()
    server = server_with(upstream, AuditLog.open(tmp_path / "a"), guard=False)
    result = run(lambda: call(server, "echo", {"text": "hi"}))
    assert result.is_error
    assert upstream.calls == []


def test_visible_tools_fails_closed_on_an_unexpected_result() -> None:
    with pytest.raises(MCPError):
        visible_tools({"unexpected": True}, GRANT)
    with pytest.raises(MCPError):
        visible_tools(None, GRANT)


def test_stdio_grants_stop_a_session_whose_token_is_revoked(tmp_path: Path) -> None:
    lab = TokenLab(tmp_path / "keys")
    claims = lab.verifier.verify(lab.token(claims=lab.claims(tools=["echo"])))
    upstream, audit = Upstream(), AuditLog.open(tmp_path / "audit.jsonl")
    grants = Grants()
    grants.run_under(lab.verifier, claims)
    server = server_with(upstream, audit, grants)

    async def session() -> MCPError:
        async with Client(server) as client:
            assert not (await client.call_tool("echo", {"text": "a"})).is_error
            lab.denylist.revoke_jti(claims.jti, claims.exp)
            try:
                await client.call_tool("echo", {"text": "b"})
            except MCPError as exc:
                return exc
        raise AssertionError("a revoked token kept working")

    refused = run(session)
    assert "no longer valid (revoked" in refused.error.message
    other = lab.verifier.verify(lab.token(claims=lab.claims(jti="j2", tools=["echo"])))
    StdioGrant(lab.verifier, other)()
    lab.clock.now = other.exp  # and expiry, for a token nobody revoked
    with pytest.raises(Refusal, match=r"no longer valid \(expired"):
        StdioGrant(lab.verifier, other)()
    assert upstream.calls == ["echo"]
    assert [line["outcome"] for line in audit_lines(tmp_path / "audit.jsonl")] == [
        "allowed",
        "denied",
    ]


# -- ToolScopeLayer ---------------------------------------------------------


class Inner:
    """The rest of the ASGI stack: records what reached it and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def asgi_post(
    app: Any, body: bytes, *, authenticated: bool = True, chunk: int = 0
) -> tuple[int, dict[str, str], bytes]:
    """POST `body` to `app` at /mcp; returns status, headers, body."""
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    if authenticated:
        claims = Claims("iss", "alice", "aud", 0, None, 2**40, "jti-1", frozenset({"echo"}), "k")
        scope["user"] = AuthenticatedUser(access_token("t", claims))
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages: list[Message] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    run(lambda: app(scope, receive, send))
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def layer(inner: Inner, tmp_path: Path, max_body: int = 4096) -> ToolScopeLayer:
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    return ToolScopeLayer(
        inner,
        path="/mcp",
        resource_metadata="http://h/.well-known/x",
        audit=audit,
        max_body=max_body,
    )


def rpc(name: object, id: object = 3) -> bytes:
    params = {"name": name, "arguments": {}}
    return json.dumps(
        {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}
    ).encode()


def test_scope_layer_answers_403_and_the_request_goes_no_further(tmp_path: Path) -> None:
    inner = Inner()
    status, headers, body = asgi_post(layer(inner, tmp_path), rpc("secret"), chunk=7)
    assert status == 403
    assert headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="secret", '
        'resource_metadata="http://h/.well-known/x", '
        'error_description="the token does not name this tool"'
    )
    assert json.loads(body)["error"] == {"code": -32602, "message": tool_refused_message("secret")}
    assert inner.bodies == []
    [line] = audit_lines(tmp_path / "audit.jsonl")
    assert (line["sub"], line["tool"], line["outcome"]) == ("alice", "secret", "denied")


def test_scope_layer_replays_an_allowed_body_intact(tmp_path: Path) -> None:
    inner = Inner()
    body = rpc("echo")
    assert asgi_post(layer(inner, tmp_path), body, chunk=5)[0] == 200
    list_body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    assert asgi_post(layer(inner, tmp_path), list_body)[0] == 200
    assert inner.bodies == [body, list_body]


def test_scope_layer_leaves_unauthenticated_and_unparsable_requests_to_the_sdk(
    tmp_path: Path,
) -> None:
    inner = Inner()
    assert asgi_post(layer(inner, tmp_path), rpc("secret"), authenticated=False)[0] == 200
    assert asgi_post(layer(inner, tmp_path), b'{"method": "tools/call", ')[0] == 200
    assert len(inner.bodies) == 2  # the SDK then answers 401 / a parse error


def test_scope_layer_refuses_batches_and_oversized_bodies(tmp_path: Path) -> None:
    inner = Inner()
    batch = b"[" + rpc("echo") + b"," + rpc("secret") + b"]"
    status, _, body = asgi_post(layer(inner, tmp_path), batch)
    assert status == 400
    assert "batches are not accepted" in json.loads(body)["error"]["message"]
    status, _, _ = asgi_post(layer(inner, tmp_path, max_body=64), rpc("echo" * 40), chunk=16)
    assert status == 413
    assert inner.bodies == []


def test_scope_layer_never_puts_an_odd_name_in_the_header(tmp_path: Path) -> None:
    status, headers, body = asgi_post(layer(Inner(), tmp_path), rpc('x", scope="echo'))
    assert status == 403
    assert "scope=" not in headers["www-authenticate"]
    assert json.loads(body)["id"] == 3
    status, _, body = asgi_post(layer(Inner(), tmp_path), rpc("secret", id=True))
    assert json.loads(body)["id"] is None  # only a string or integer id is echoed
