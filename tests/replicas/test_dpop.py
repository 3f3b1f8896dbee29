"""DPoP through real processes: two `serve` replicas on one Redis behind HAProxy, the stub upstream.

A token bound to a key (`cnf.jkt`) works for the client that holds the key
(the `mcp` Python client with `DPoPAuth`) and for nobody else: every way an
attacker holding only the token could try is refused with a DPoP challenge,
and the stub sees no call from any of them. Nonces: the first request gets
`use_dpop_nonce`, the retry works, a nonce of an old bucket is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_warden.demo.harness import jsonrpc_headers, tools_call
from mcp_warden.dpop_client import DPoPAuth
from mcp_warden.tokens.dpop import PrivateKey, public_jwk, sign_proof, thumbprint
from mcp_warden.tokens.dpop_nonce import NonceSource
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.jws import b64url_encode
from tests.support.replicas import AUDIENCE, SEARCH, Cluster, cluster
from tests.support.server import ISSUER

pytestmark = pytest.mark.slow

NONCE_KEY = secrets.token_hex(32)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("dpop"), replicas=2) as lab:
        yield lab


def bound_token(lab: Cluster, key: PrivateKey, sub: str = "dpop-client") -> str:
    jkt = thumbprint(public_jwk(key))
    return mint(
        lab.issuer.keys_dir,
        issuer=ISSUER,
        sub=sub,
        tools=["web_search"],
        ttl=600,
        audience=AUDIENCE,
        extra_claims={"cnf": {"jkt": jkt}},
    )


class Route(httpx2.AsyncBaseTransport):
    """Name resolution: requests addressed to AUDIENCE go to HAProxy's port (Host kept)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def mcp_search(port: int, auth: DPoPAuth) -> Any:
    async with (
        httpx2.AsyncClient(auth=auth, transport=Route(port), timeout=30) as http,
        Client(streamable_http_client(AUDIENCE, http_client=http)) as session,
    ):
        return await session.call_tool("web_search", SEARCH)


def raw(url: str, headers: dict[str, str]) -> httpx.Response:
    """One tools/call POST with exactly these auth headers (as an attacker sends it)."""
    sent = {**jsonrpc_headers(None), **headers}
    with httpx.Client(timeout=30, trust_env=False) as http:
        return http.post(url, content=json.dumps(tools_call("web_search", SEARCH)), headers=sent)


def stub_calls(lab: Cluster) -> int:
    return sum(replica.stub.calls() for replica in lab.replicas)


def refused(response: httpx.Response, reason: str, error: str = "invalid_dpop_proof") -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'DPoP error="{error}", algs="EdDSA ES256"'), challenge
    assert f'error_description="{reason}: ' in challenge, challenge


def proof(key: PrivateKey, token: str | None, **kw: Any) -> str:
    args: dict[str, Any] = {"method": "POST", "url": AUDIENCE, "now": time.time()}
    args.update(kw)
    return sign_proof(key, access_token=token, **args)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_python_client_with_the_key_calls_web_search(lab: Cluster, alg: str) -> None:
    key: PrivateKey = (
        Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
    )
    token = bound_token(lab, key)
    for replica in lab.replicas:
        before = replica.stub.calls()
        with lab.haproxy.only([replica.index]):
            result = asyncio.run(mcp_search(lab.haproxy.port, DPoPAuth(key, token)))
        assert not result.is_error, result
        assert replica.stub.calls() == before + 1


def test_the_token_without_the_key_fails_in_every_way(lab: Cluster) -> None:
    key = Ed25519PrivateKey.generate()
    token = bound_token(lab, key)
    other = Ed25519PrivateKey.generate()
    first = lab.haproxy.url  # HAProxy sends each request to either replica
    dpop = f"DPoP {token}"
    before = stub_calls(lab)

    # no proof, and the bound token as a plain bearer token (with and without a proof)
    refused(raw(first, {"Authorization": dpop}), "missing_proof")
    bearer = raw(first, {"Authorization": f"Bearer {token}"})
    refused(bearer, "bound_token_as_bearer")
    refused(
        raw(first, {"Authorization": f"Bearer {token}", "DPoP": proof(key, token)}),
        "proof_without_token",
    )
    # a proof signed by another key: valid for that key, but not the bound one
    refused(raw(first, {"Authorization": dpop, "DPoP": proof(other, token)}), "key_mismatch")
    # another key's jwk in the header, signed by ours (or the reverse)
    forged = proof(other, token, header={"jwk": public_jwk(key)})
    refused(raw(first, {"Authorization": dpop, "DPoP": forged}), "bad_signature")
    # another method or URL, a wrong ath, an iat outside the window
    refused(
        raw(first, {"Authorization": dpop, "DPoP": proof(key, token, method="GET")}), "wrong_method"
    )
    for url in ("https://mcp.example.test/other", "https://evil.test/mcp", first):
        refused(
            raw(first, {"Authorization": dpop, "DPoP": proof(key, token, url=url)}), "wrong_url"
        )
    refused(raw(first, {"Authorization": dpop, "DPoP": proof(key, "another.token.x")}), "wrong_ath")
    refused(raw(first, {"Authorization": dpop, "DPoP": proof(key, None)}), "wrong_ath")
    for iat in (time.time() - 120, time.time() + 60):
        refused(
            raw(first, {"Authorization": dpop, "DPoP": proof(key, token, now=iat)}),
            "iat_outside_window",
        )
    # alg none, and HS256 keyed with the public key
    head = {"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(key)}
    body = {"jti": "n1", "htm": "POST", "htu": AUDIENCE, "iat": int(time.time())}
    unsigned = f"{segment(head)}.{segment(body)}."
    refused(raw(first, {"Authorization": dpop, "DPoP": unsigned}), "unsupported_algorithm")
    head["alg"] = "HS256"
    signing = f"{segment(head)}.{segment(body)}"
    mac = hmac.new(public_jwk(key)["x"].encode(), signing.encode(), hashlib.sha256).digest()
    hs256 = f"{signing}.{b64url_encode(mac)}"
    refused(raw(first, {"Authorization": dpop, "DPoP": hs256}), "unsupported_algorithm")
    # a private key in the proof's jwk
    leaky = proof(key, token, header={"jwk": {**public_jwk(key), "d": "A" * 43}})
    refused(raw(first, {"Authorization": dpop, "DPoP": leaky}), "private_key")
    # two proofs
    two = [("Authorization", dpop), ("DPoP", proof(key, token)), ("DPoP", proof(key, token))]
    with httpx.Client(timeout=30, trust_env=False) as http:
        response = http.post(
            first,
            content=json.dumps(tools_call("web_search", SEARCH)),
            headers=[*jsonrpc_headers(None).items(), *two],
        )
    refused(response, "multiple_proofs")
    assert stub_calls(lab) == before, "a refused request reached the upstream"

    # a replayed proof: used once (a call), then to the same and to the other replica
    once = proof(key, token)
    with lab.haproxy.only([0]):
        assert raw(first, {"Authorization": dpop, "DPoP": once}).status_code == 200
        assert stub_calls(lab) == before + 1
        refused(raw(first, {"Authorization": dpop, "DPoP": once}), "replayed")
    with lab.haproxy.only([1]):
        refused(raw(first, {"Authorization": dpop, "DPoP": once}), "replayed")
    assert stub_calls(lab) == before + 1
    # the error never echoes the token or the proof
    assert token not in bearer.text
    assert token not in bearer.headers["www-authenticate"]


def test_unbound_tokens_as_bearer_work_and_are_refused_as_dpop(lab: Cluster) -> None:
    token = lab.issuer.mint(["web_search"], sub="bearer-client")
    first = lab.haproxy.url
    assert raw(first, {"Authorization": f"Bearer {token}"}).status_code == 200
    key = Ed25519PrivateKey.generate()
    dpop = {"Authorization": f"DPoP {token}", "DPoP": proof(key, token)}
    refused(raw(first, dpop), "unbound_token")


def segment(doc: object) -> str:
    return b64url_encode(json.dumps(doc).encode())


def test_nonces_first_request_asks_retry_works_old_bucket_refused(lab: Cluster) -> None:
    for replica in lab.replicas:
        lab.start(replica, MCP_DPOP_NONCE="1", MCP_DPOP_NONCE_KEY=NONCE_KEY)
    try:
        key = Ed25519PrivateKey.generate()
        token = bound_token(lab, key)
        url = lab.haproxy.url
        dpop = f"DPoP {token}"
        # the first request: use_dpop_nonce and a DPoP-Nonce
        with lab.haproxy.only([0]):
            asked = raw(url, {"Authorization": dpop, "DPoP": proof(key, token)})
        refused(asked, "use_nonce", error="use_dpop_nonce")
        nonce = asked.headers["dpop-nonce"]
        # the retry with it works, on the other replica too (no shared state but the key)
        with lab.haproxy.only([1]):
            ok = raw(url, {"Authorization": dpop, "DPoP": proof(key, token, nonce=nonce)})
        assert ok.status_code == 200, ok.text
        # a nonce from an older bucket, correctly keyed, is refused
        source = NonceSource(NONCE_KEY, bucket_seconds=60.0)
        old = source.make(int(time.time() // 60) - 2)
        stale = raw(url, {"Authorization": dpop, "DPoP": proof(key, token, nonce=old)})
        refused(stale, "use_nonce", error="use_dpop_nonce")
        forged = NonceSource("x" * 40, bucket_seconds=60.0).current()
        bad = raw(url, {"Authorization": dpop, "DPoP": proof(key, token, nonce=forged)})
        refused(bad, "use_nonce", error="use_dpop_nonce")
        # the Python client: first request answered use_dpop_nonce, its retry works
        before = stub_calls(lab)
        result = asyncio.run(mcp_search(lab.haproxy.port, DPoPAuth(key, token)))
        assert not result.is_error, result
        assert stub_calls(lab) == before + 1
    finally:
        for replica in lab.replicas:
            lab.start(replica)


def test_refusals_are_audited(lab: Cluster) -> None:
    key = Ed25519PrivateKey.generate()
    token = bound_token(lab, key, sub="audited")
    with lab.haproxy.only([0]):
        refused(raw(lab.haproxy.url, {"Authorization": f"DPoP {token}"}), "missing_proof")
    log = lab.servers / "audit-0.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line.get("reason") == "dpop_missing_proof" for line in lines), lines[-3:]
    assert token not in log.read_text()
