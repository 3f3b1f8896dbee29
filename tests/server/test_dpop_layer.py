"""DpopLayer, the adapter's checks, nonces, the Python client's Auth and provider, in-process.

The SDK is stood in for by `sdk_like`: it reads `Authorization: Bearer` from
the scope, as BearerAuthBackend does, and answers 401 when `verify_token`
returns None. The real processes are in tests/replicas/test_dpop.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.client.auth import OAuthTokenError
from mcp.server import MCPServer
from starlette.types import Message, Receive, Scope, Send

from mcp_warden.config import Settings
from mcp_warden.demo.oauth import MemoryTokens
from mcp_warden.dpop_client import DPoPAuth, DPoPClientCredentialsProvider
from mcp_warden.errors import ConfigError
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.auth import ChallengeLayer, TokenVerifierAdapter
from mcp_warden.server.dpop import DpopLayer
from mcp_warden.tokens.dpop import public_jwk, sign_proof, thumbprint, verify_proof
from mcp_warden.tokens.dpop_nonce import NonceSource
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.replay import MemoryReplayCache
from mcp_warden.warden import Warden
from tests.support.server import audit_lines, run
from tests.support.tokens import AUDIENCE, TokenLab

SECRET = "s" * 40


def sdk_like(adapter: TokenVerifierAdapter) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        auth = dict(scope["headers"]).get(b"authorization", b"")
        token = auth[7:].decode() if auth.startswith(b"Bearer ") else None
        accepted = await adapter.verify_token(token) if token is not None else None
        status = 200 if accepted else 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def layered(lab: TokenLab, *, require_dpop: bool = False, nonces: NonceSource | None = None) -> Any:
    settings = Settings(token_audience=AUDIENCE, require_dpop=require_dpop)
    audit = AuditLog.open(lab.path / "audit.jsonl")
    adapter = TokenVerifierAdapter(lab.verifier, offload=False, require_dpop=require_dpop)
    inner = ChallengeLayer(sdk_like(adapter), resource_metadata="https://x/meta", audit=audit)
    return DpopLayer(
        inner,
        settings=settings,
        verifier=lab.verifier,
        replay=MemoryReplayCache(clock=lab.clock.time),
        audit=audit,
        nonces=nonces,
        clock=lab.clock.time,
    )


def call(app: Any, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": raw}
    run(lambda: app(scope, receive, send))
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}


@pytest.fixture
def lab(tmp_path: Path) -> TokenLab:
    return TokenLab(tmp_path)


def bound(lab: TokenLab, key: Ed25519PrivateKey) -> str:
    return lab.token(claims=lab.claims(cnf={"jkt": thumbprint(public_jwk(key))}))


def dpop(lab: TokenLab, key: Ed25519PrivateKey, token: str, **kw: Any) -> list[tuple[str, str]]:
    proof = sign_proof(
        key, method="POST", url=AUDIENCE, now=lab.clock.now, access_token=token, **kw
    )
    return [("Authorization", f"DPoP {token}"), ("DPoP", proof)]


def reason_of(headers: dict[str, str]) -> str:
    challenge = headers["www-authenticate"]
    assert challenge.startswith("DPoP "), challenge
    return challenge.split('error_description="', 1)[1].split(":", 1)[0]


def test_bound_token_with_proof_passes_and_as_bearer_is_refused(lab: TokenLab) -> None:
    key = Ed25519PrivateKey.generate()
    token = bound(lab, key)
    app = layered(lab)
    assert call(app, dpop(lab, key, token))[0] == 200
    status, headers = call(app, [("Authorization", f"Bearer {token}")])
    assert (status, reason_of(headers)) == (401, "bound_token_as_bearer")
    assert 'algs="EdDSA ES256"' in headers["www-authenticate"]
    lines = audit_lines(lab.path / "audit.jsonl")
    assert lines[-1]["reason"] == "dpop_bound_token_as_bearer"


def test_require_dpop_refuses_unbound_tokens(lab: TokenLab) -> None:
    unbound = lab.token()
    assert call(layered(lab), [("Authorization", f"Bearer {unbound}")])[0] == 200
    strict = layered(lab, require_dpop=True)
    status, headers = call(strict, [("Authorization", f"Bearer {unbound}")])
    assert (status, reason_of(headers)) == (401, "dpop_required")
    key = Ed25519PrivateKey.generate()
    status, headers = call(strict, dpop(lab, key, unbound))
    assert (status, reason_of(headers)) == (401, "unbound_token")
    assert call(strict, dpop(lab, key, bound(lab, key)))[0] == 200


def test_bad_token_under_dpop_is_an_invalid_token_challenge(lab: TokenLab) -> None:
    key = Ed25519PrivateKey.generate()
    expired = lab.token(claims=lab.claims(exp=int(lab.clock.now) - 1, cnf={"jkt": "x" * 43}))
    status, headers = call(layered(lab), dpop(lab, key, expired))
    assert status == 401
    assert headers["www-authenticate"].startswith('DPoP error="invalid_token"')
    assert expired not in headers["www-authenticate"]


def test_cnf_must_be_a_jkt(lab: TokenLab) -> None:
    for cnf in ({"jkt": "short"}, {"x5t#S256": "a" * 43}, {"jkt": "a" * 43, "x": 1}, "jkt"):
        with pytest.raises(TokenError) as info:
            lab.verifier.verify(lab.token(claims=lab.claims(cnf=cnf, jti=f"j{cnf!r}")))
        assert info.value.reason == "invalid_claim"
    claims = lab.verifier.verify(lab.token(claims=lab.claims(cnf={"jkt": "a" * 43})))
    assert claims.cnf_jkt == "a" * 43
    assert claims.as_json()["cnf"] == {"jkt": "a" * 43}


def test_nonce_layer_asks_then_accepts(lab: TokenLab) -> None:
    nonces = NonceSource(SECRET, bucket_seconds=60, clock=lab.clock.time)
    key = Ed25519PrivateKey.generate()
    token = bound(lab, key)
    app = layered(lab, nonces=nonces)
    status, headers = call(app, dpop(lab, key, token))
    assert status == 401
    assert headers["www-authenticate"].startswith('DPoP error="use_dpop_nonce"')
    status, headers = call(app, dpop(lab, key, token, nonce=headers["dpop-nonce"]))
    assert status == 200
    assert headers["dpop-nonce"] == nonces.current()


def test_nonce_buckets(lab: TokenLab) -> None:
    nonces = NonceSource(SECRET, bucket_seconds=60, clock=lab.clock.time)
    now = nonces.current()
    assert nonces.check(now)
    lab.clock.now += 60
    assert nonces.check(now)  # the previous bucket
    lab.clock.now += 60
    assert not nonces.check(now)  # older: refused
    assert not nonces.check(None)
    assert not nonces.check("not-a-nonce")
    other = NonceSource("t" * 40, bucket_seconds=60, clock=lab.clock.time)
    assert not nonces.check(other.current())
    with pytest.raises(ConfigError):
        NonceSource("short", bucket_seconds=60)
    with pytest.raises(ConfigError):
        NonceSource.from_settings(Settings(dpop_nonce=True))
    assert NonceSource.from_settings(Settings()) is None


def test_settings_flags() -> None:
    env = {"MCP_REQUIRE_DPOP": "1", "MCP_DPOP_NONCE": "0", "MCP_DPOP_MAX_AGE_SECONDS": "30"}
    settings = Settings.from_env(env)
    assert (settings.require_dpop, settings.dpop_nonce, settings.dpop_max_age_seconds) == (
        True,
        False,
        30.0,
    )
    with pytest.raises(ConfigError, match="MCP_REQUIRE_DPOP"):
        Settings.from_env({"MCP_REQUIRE_DPOP": "maybe"})
    assert "nonce_key" not in repr(Settings(dpop_nonce_key=SECRET)).replace("dpop_nonce_key", "")
    assert SECRET not in repr(Settings(dpop_nonce_key=SECRET))


def test_dpop_auth_signs_each_request_and_retries_once_with_the_nonce() -> None:
    key = Ed25519PrivateKey.generate()
    seen: list[httpx2.Request] = []
    sent: list[tuple[str, str]] = []  # (authorization, proof) as each was sent

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        sent.append((request.headers["authorization"], request.headers["dpop"]))
        if len(seen) == 1:
            challenge = 'DPoP error="use_dpop_nonce", algs="EdDSA ES256"'
            return httpx2.Response(
                401, headers={"www-authenticate": challenge, "dpop-nonce": "n-1"}
            )
        return httpx2.Response(200, headers={"dpop-nonce": "n-2"})

    auth = DPoPAuth(key, "tok.en.x")
    assert auth.jkt == thumbprint(public_jwk(key))

    async def go() -> None:
        async with httpx2.AsyncClient(auth=auth, transport=httpx2.MockTransport(handler)) as http:
            assert (await http.post(AUDIENCE + "?q=1", content=b"{}")).status_code == 200
            assert (await http.post(AUDIENCE, content=b"{}")).status_code == 200

    run(go)
    assert len(seen) == 3
    proofs = [
        verify_proof(proof, method="POST", url=AUDIENCE, access_token="tok.en.x", now=time.time())
        for _, proof in sent
    ]
    assert [p.nonce for p in proofs] == [None, "n-1", "n-2"]
    assert len({p.jti for p in proofs}) == 3
    assert all(authorization == "DPoP tok.en.x" for authorization, _ in sent)


def test_stdio_refuses_a_bound_token(lab: TokenLab) -> None:
    token = lab.token(claims=lab.claims(cnf={"jkt": "a" * 43}))
    settings = Settings(token=token, token_audience=AUDIENCE)
    warden = Warden(
        settings, verifier=lab.verifier, denylist=lab.denylist, audit=AuditLog.open(None)
    )
    server = MCPServer("t", **warden.server_options())
    with pytest.raises(ConfigError, match="bound to a DPoP key"):
        run(lambda: warden.serve_stdio(server))


@pytest.mark.parametrize("token_type", ["DPoP", "Bearer"])
def test_the_client_credentials_provider_gets_and_uses_only_a_bound_token(token_type: str) -> None:
    key = Ed25519PrivateKey.generate()
    issuer = "https://auth.example.test"
    prm = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"  # AUDIENCE's
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        url = str(request.url)
        if url == prm:
            return httpx2.Response(
                200, json={"resource": AUDIENCE, "authorization_servers": [issuer]}
            )
        if url == issuer + "/.well-known/oauth-authorization-server":
            return httpx2.Response(
                200,
                json={
                    "issuer": issuer,
                    "token_endpoint": issuer + "/token",
                    "authorization_endpoint": issuer + "/authorize",
                    "response_types_supported": ["code"],
                },
            )
        if url == issuer + "/token":
            answer = {"access_token": "tok.en.x", "token_type": token_type, "expires_in": 300}
            return httpx2.Response(200, json=answer)
        if "authorization" not in request.headers:
            challenge = f'Bearer error="invalid_token", resource_metadata="{prm}"'
            return httpx2.Response(401, headers={"www-authenticate": challenge})
        return httpx2.Response(200, json={})

    provider = DPoPClientCredentialsProvider(
        key,
        server_url=AUDIENCE,
        storage=MemoryTokens(),
        client_id="mcpw_c",
        client_secret="s3cret",
        issuer=issuer,
    )

    async def go() -> int:
        async with httpx2.AsyncClient(
            auth=provider, transport=httpx2.MockTransport(handler)
        ) as http:
            return (await http.post(AUDIENCE, content=b"{}")).status_code

    if token_type == "Bearer":
        with pytest.raises(OAuthTokenError, match="not DPoP-bound"):
            run(go)
        assert not any(r.headers.get("authorization", "").startswith("DPoP") for r in sent)
        return
    assert run(go) == 200
    [token_request] = [r for r in sent if str(r.url) == issuer + "/token"]
    checked = verify_proof(
        token_request.headers["dpop"],
        method="POST",
        url=issuer + "/token",
        access_token=None,
        now=time.time(),
    )
    assert checked.jkt == provider.jkt == thumbprint(public_jwk(key))
    last = sent[-1]
    assert last.headers["authorization"] == "DPoP tok.en.x"
    used = verify_proof(
        last.headers["dpop"], method="POST", url=AUDIENCE, access_token="tok.en.x", now=time.time()
    )
    assert used.jkt == provider.jkt
