"""The `mcp` Python client gets and uses its own DPoP-bound token (real processes).

`issuer serve` (TLS, the test CA), two `serve` replicas on one Redis with
MCP_REQUIRE_DPOP=1 and MCP_TOKEN_ISSUER / MCP_JWKS naming the issuer, their
stubs, HAProxy in front of them. The client (`DPoPClientCredentialsProvider`, registered
`--require-dpop`) starts with no token: the first replica's 401 leads it to
the issuer, its token request carries a proof, the answer is a DPoP token
bound to its key's thumbprint, and it calls `web_search` on both replicas
with `Authorization: DPoP` and a fresh proof, through HAProxy (the other
replica drained for each call). The same token without the key is refused,
and no stub sees a call from it.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_warden.demo.oauth import MemoryTokens
from mcp_warden.dpop_client import DPoPClientCredentialsProvider
from mcp_warden.tokens.dpop import PrivateKey
from tests.replicas.dpop_stack import DPoPStack, dpop_stack
from tests.support.replicas import AUDIENCE, SEARCH
from tests.support.server import run

pytestmark = pytest.mark.slow  # real issuer, replicas, Redis and stubs

BALANCER_HOST = httpx2.URL(AUDIENCE).host


@dataclass
class Seen:
    """What went to the issuer's token endpoint and what came back."""

    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_answers: list[dict[str, Any]] = field(default_factory=list)
    dpop_to_replicas: int = 0
    nonce_asked: int = 0


class Route(httpx2.AsyncBaseTransport):
    """AUDIENCE's host resolved to HAProxy's port (Host kept); anything else over TLS as is.

    Also what the client sent to the token endpoint and got back, and the DPoP traffic.
    """

    def __init__(self, port: int, tls: ssl.SSLContext, seen: Seen) -> None:
        self._port, self._seen = port, seen
        self._plain = httpx2.AsyncHTTPTransport()
        self._tls = httpx2.AsyncHTTPTransport(verify=tls)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.host != BALANCER_HOST:
            response = await self._tls.handle_async_request(request)
            if request.url.path == "/token":
                self._seen.token_requests.append(dict(request.headers))
                body = await response.aread()
                self._seen.token_answers.append(json.loads(body))
            return response
        if request.headers.get("dpop"):
            self._seen.dpop_to_replicas += 1
        # a copy: the auth flow may send `request` again, to its own URL
        forwarded = httpx2.Request(
            request.method,
            request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        response = await self._plain.handle_async_request(forwarded)
        if "use_dpop_nonce" in response.headers.get("www-authenticate", ""):
            self._seen.nonce_asked += 1
        return response

    async def aclose(self) -> None:
        await self._plain.aclose()
        await self._tls.aclose()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DPoPStack]:
    with dpop_stack(tmp_path_factory.mktemp("dpop-python-client")) as stack:
        yield stack


async def search(
    setup: DPoPStack, port: int, provider: DPoPClientCredentialsProvider, seen: Seen
) -> Any:
    route = Route(port, setup.lab.pki.client_context(), seen)
    async with (
        httpx2.AsyncClient(auth=provider, transport=route, timeout=30) as http,
        Client(streamable_http_client(AUDIENCE, http_client=http)) as session,
    ):
        return await session.call_tool("web_search", SEARCH)


@pytest.fixture
def nonces(setup: DPoPStack) -> Iterator[None]:
    """The replicas restarted with MCP_DPOP_NONCE=1 (one nonce key), then as before."""
    key = secrets.token_hex(32)
    for replica in setup.cluster.replicas:
        setup.cluster.start(replica, MCP_DPOP_NONCE="1", MCP_DPOP_NONCE_KEY=key)
    try:
        yield
    finally:
        for replica in setup.cluster.replicas:
            setup.cluster.start(replica)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_python_client_gets_a_bound_token_and_calls_both_replicas(
    setup: DPoPStack, alg: str
) -> None:
    seen = calls_both_replicas(setup, alg)
    assert seen.nonce_asked == 0


@pytest.mark.usefixtures("nonces")
def test_python_client_retries_with_the_servers_nonce(setup: DPoPStack) -> None:
    seen = calls_both_replicas(setup, "EdDSA", name="py-dpop-nonce")
    # the first DPoP request to each replica is asked for a nonce (one key, one bucket:
    # the second replica may accept the first's nonce), and each retry works
    assert 1 <= seen.nonce_asked <= 2


def calls_both_replicas(setup: DPoPStack, alg: str, name: str | None = None) -> Seen:
    key: PrivateKey = (
        Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
    )
    client = setup.lab.add_client(name or f"py-dpop-{alg}", ["web_search"], require_dpop=True)
    assert client.secret is not None
    storage = MemoryTokens()
    provider = DPoPClientCredentialsProvider(
        key,
        server_url=AUDIENCE,
        storage=storage,
        client_id=client.client_id,
        client_secret=client.secret,
        issuer=setup.lab.issuer_url,
    )
    stubs = setup.cluster.replicas
    before = [replica.stub.calls() for replica in stubs]
    seen = Seen()
    haproxy = setup.cluster.haproxy
    for replica in stubs:  # the first discovers and fetches; the second reuses the token
        with haproxy.only([replica.index]):
            result = run(lambda: search(setup, haproxy.port, provider, seen))
        assert not result.is_error, result
    assert [replica.stub.calls() for replica in stubs] == [n + 1 for n in before]

    # One token request, with a proof; the answer is a DPoP token bound to the key.
    [request], [answer] = seen.token_requests, seen.token_answers
    assert request.get("dpop"), request
    assert answer["token_type"] == "DPoP"
    token = answer["access_token"]
    assert storage.tokens is not None
    assert storage.tokens.access_token == token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": provider.jkt}
    assert seen.dpop_to_replicas >= 4  # initialize and tools/call on each replica
    for replica in stubs:
        assert setup.tool_outcomes(replica, client) == [("web_search", "allowed")], replica.index
    # The same token without the key: as Bearer, or as DPoP with no proof.
    setup.refuses_stolen(client, token)
    return seen
