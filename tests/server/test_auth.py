"""The auth adapter and what refusals say, in-process; the audit log; startup helpers.

The SDK's own 401 path is reproduced by `sdk_like`, which does what
BearerAuthBackend + RequireAuthMiddleware do: call verify_token, answer 401
when it returns None. The real SDK stack is exercised in test_http.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import ChallengeLayer, TokenVerifierAdapter, auth_settings
from mcp_warden.server.http import revocations_checkable, transport_security
from mcp_warden.server.run import warn_if_not_audience
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier
from tests.support.server import audit_lines, run
from tests.support.tokens import AUDIENCE, ISSUER, TokenLab

SDK_CHALLENGE = b'Bearer error="invalid_token", error_description="Authentication required"'


class Unreachable(MemoryDenylist):
    """A denylist whose shared store has been unreachable for too long."""

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        raise TokenError("revocation_unavailable", "cannot reach redis://127.0.0.1:1/0 since 31 s")

    def fresh(self) -> bool:
        return False


def sdk_like(adapter: TokenVerifierAdapter, token: str | None) -> Any:
    """An ASGI app that authenticates as the SDK does and answers 200 or its 401."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        accepted = await adapter.verify_token(token) if token is not None else None
        status, headers = (200, []) if accepted else (401, [(b"www-authenticate", SDK_CHALLENGE)])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"sdk": true}'})

    return app


def audit(lab: TokenLab) -> AuditLog:
    """The audit log the layers under test write to (lab.path/audit.jsonl)."""
    return AuditLog.open(lab.path / "audit.jsonl")


def request(app: Any) -> tuple[int, dict[str, str], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    run(lambda: app(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, sent[1]["body"]


@pytest.fixture
def lab(tmp_path: Path) -> TokenLab:
    return TokenLab(tmp_path)


@pytest.mark.parametrize("offload", [False, True])
def test_adapter_maps_claims_to_the_sdks_access_token(lab: TokenLab, offload: bool) -> None:
    token = lab.token(claims=lab.claims(tools=["web_search", "usage"], sub="svc-7"))
    access = run(lambda: TokenVerifierAdapter(lab.verifier, offload=offload).verify_token(token))
    assert access is not None
    assert access.client_id == access.subject == "svc-7"
    assert access.scopes == ["usage", "web_search"]
    assert access.resource == AUDIENCE
    assert access.expires_at == lab.claims()["exp"]
    assert access.claims is not None
    assert (access.claims["jti"], access.claims["iss"]) == ("jti-0001", ISSUER)


def test_401_says_which_check_failed_and_never_echoes_the_token(lab: TokenLab) -> None:
    adapter = TokenVerifierAdapter(lab.verifier, offload=False)
    token = lab.token(claims=lab.claims(exp=int(lab.clock.now) - 1, iat=int(lab.clock.now) - 60))
    app = ChallengeLayer(
        sdk_like(adapter, token), resource_metadata="http://h/.well-known/r", audit=audit(lab)
    )
    status, headers, body = request(app)
    assert status == 401
    assert headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="expired: the token has expired", '
        'resource_metadata="http://h/.well-known/r"'
    )
    assert json.loads(body) == {
        "error": "invalid_token",
        "error_description": "expired: the token has expired",
    }
    assert int(headers["content-length"]) == len(body)
    assert token not in body.decode() + json.dumps(headers)


def test_401_without_a_verifier_decision_is_the_sdks_own(lab: TokenLab) -> None:
    adapter = TokenVerifierAdapter(lab.verifier, offload=False)
    status, headers, body = request(
        ChallengeLayer(sdk_like(adapter, None), resource_metadata="m", audit=audit(lab))
    )
    assert (status, headers["www-authenticate"], body) == (
        401,
        SDK_CHALLENGE.decode(),
        b'{"sdk": true}',
    )
    ok = request(
        ChallengeLayer(sdk_like(adapter, lab.token()), resource_metadata="m", audit=audit(lab))
    )
    assert ok[0] == 200


def test_unreachable_revocation_list_is_503_with_retry_after(lab: TokenLab) -> None:
    verifier = Verifier(
        lab.jwks, issuer=ISSUER, audience=AUDIENCE, denylist=Unreachable(), clock=lab.clock.time
    )
    adapter = TokenVerifierAdapter(verifier, offload=False)
    token = lab.token()
    status, headers, body = request(
        ChallengeLayer(sdk_like(adapter, token), resource_metadata="m", audit=audit(lab))
    )
    assert status == 503
    assert headers["retry-after"] == "5"
    message = json.loads(body)["error"]["message"]
    assert message.startswith(
        "revocation_unavailable: this server cannot reach its revocation list"
    )
    assert "redis://" not in message  # the store's address stays in the server's own log
    assert token not in body.decode()


def test_issuer_url_is_the_token_issuer_when_it_is_a_url() -> None:
    named = auth_settings(Settings(token_audience="https://mcp.example.com:8443/mcp"))
    assert str(named.issuer_url) == "https://mcp.example.com:8443"
    assert named.validate_token_resource is True
    assert str(named.resource_server_url) == "https://mcp.example.com:8443/mcp"
    url = auth_settings(Settings(token_issuer="https://issuer.example.com"))
    assert str(url.issuer_url) == "https://issuer.example.com"
    with pytest.raises(ConfigError, match="MCP_TOKEN_AUDIENCE"):
        auth_settings(Settings(token_audience="/mcp"))


def test_audit_log_file_is_private_and_lines_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.open(path)
    audit.record(sub="a", jti="j", tool="t" * 500, outcome="denied", reason="r", latency_ms=0.1234)
    audit.record(sub=None, jti=None, tool=["not", "a", "name"], outcome="error", latency_ms=2)
    audit.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first, second = audit_lines(path)
    assert first["tool"] == "t" * 128
    assert first["latency_ms"] == 0.123
    assert first["time"].endswith("Z")
    assert second["tool"] is None
    assert "reason" not in second
    AuditLog.open(path).record(sub="b", jti="k", tool="x", outcome="allowed", latency_ms=1)
    assert len(audit_lines(path)) == 3  # appended, never truncated


def test_audience_mismatch_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warn_if_not_audience("http://127.0.0.1:8000/mcp", "127.0.0.1", 8000)
        warn_if_not_audience("http://0.0.0.0:9000/mcp", "0.0.0.0", 9000)
        assert caplog.records == []
        warn_if_not_audience("https://mcp.example.com/mcp", "127.0.0.1", 8000)
    assert "clients must use that URL" in caplog.records[0].getMessage()


def test_dns_rebinding_protection_admits_the_audience_host() -> None:
    local = transport_security("https://mcp.example.com/mcp", "127.0.0.1")
    assert local is not None
    assert "mcp.example.com" in local.allowed_hosts
    assert "https://mcp.example.com" in local.allowed_origins
    assert transport_security("https://mcp.example.com/mcp", "0.0.0.0") is None


def test_health_reports_an_unreachable_revocation_list() -> None:
    assert revocations_checkable(MemoryDenylist())
    assert not revocations_checkable(Unreachable())
