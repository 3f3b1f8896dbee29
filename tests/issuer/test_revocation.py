"""RFC 7009 at the issuer: a client revokes its own token; two replicas on one Redis refuse it.

Real processes: redis-server, `mcp-warden issuer serve` over TLS writing to
that Redis (MCP_REVOCATION_URL), two `mcp-warden serve` replicas following
it, with MCP_JWKS = the issuer's jwks_uri.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from redis import Redis

from mcp_warden.demo.harness import free_port, post, tools_call
from mcp_warden.tokens.revocation.redis import PREFIX
from tests.issuer.lab import Registered, RunningIssuer, issuer_lab
from tests.support.redis_server import RedisServer, redis_binary
from tests.support.server import deployment

pytestmark = pytest.mark.slow  # real issuer / serve / CLI processes

GRANT = {"grant_type": "client_credentials"}
WITHIN_SECONDS = 1.0


@dataclass
class Stack:
    issuer: RunningIssuer
    replicas: list[str]  # the two replicas' own URLs (both serve the one audience)
    alice: Registered
    bob: Registered
    redis: Redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("revocation")
    (tmp_path / "server").mkdir()
    redis_server = RedisServer(redis_binary(), free_port(), tmp_path)
    redis_server.start()
    try:
        yield from _stack(tmp_path, redis_server)
    finally:
        redis_server.stop()


def _stack(tmp_path: Path, redis_server: RedisServer) -> Iterator[Stack]:
    with issuer_lab(tmp_path / "issuer", MCP_REVOCATION_URL=redis_server.url) as lab:
        alice = lab.add_client("alice", ["web_search"])
        bob = lab.add_client("bob", ["web_search"])
        with deployment(
            tmp_path / "server",
            MCP_TOKEN_ISSUER=lab.issuer_url,
            MCP_JWKS=lab.issuer_url + "/jwks.json",
            MCP_REVOCATION_URL=redis_server.url,
            SSL_CERT_FILE=str(lab.pki.ca_file),
        ) as server:
            lab.env["MCP_TOKEN_AUDIENCE"] = server.audience
            second = free_port()
            with (
                lab.issuer() as issuer,
                server.serve(),
                server.serve("--port", str(second)),
            ):
                urls = [server.audience, f"http://127.0.0.1:{second}/mcp"]
                yield Stack(
                    issuer,
                    urls,
                    alice,
                    bob,
                    Redis.from_url(redis_server.url, decode_responses=True),
                )


def token_for(stack: Stack, client: Registered) -> str:
    reply = stack.issuer.post_token(GRANT, auth=client.basic)
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def jti_of(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


def answer(url: str, token: str) -> httpx.Response:
    return post(url, tools_call("web_search", {"query": "q"}), token)


def test_a_revoked_token_is_refused_by_both_replicas_within_a_second(stack: Stack) -> None:
    token = token_for(stack, stack.alice)
    for url in stack.replicas:
        assert answer(url, token).status_code == 200

    reply = stack.issuer.post_revoke({"token": token}, auth=stack.alice.basic)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    since = time.monotonic()
    for url in stack.replicas:
        while True:
            refused = answer(url, token)
            if refused.status_code == 401:
                assert "revoked" in refused.headers["www-authenticate"]
                break
            assert refused.status_code == 200, refused.text
            assert time.monotonic() - since < 5 * WITHIN_SECONDS, f"{url} still accepts it"
            time.sleep(0.02)
        assert time.monotonic() - since < WITHIN_SECONDS
    line = stack.issuer.audit()[-1]
    assert (line["event"], line["outcome"], line["client_id"]) == (
        "revoke",
        "revoked",
        stack.alice.client_id,
    )
    assert line["jti"] == jti_of(token)
    assert token not in stack.issuer.audit_log.read_text(encoding="utf-8")
    # A new token for the same client is not affected (a jti was revoked, not the client).
    assert answer(stack.replicas[1], token_for(stack, stack.alice)).status_code == 200


def test_a_client_revokes_only_its_own_tokens(stack: Stack) -> None:
    token = token_for(stack, stack.alice)
    reply = stack.issuer.post_revoke({"token": token}, auth=stack.bob.basic)
    assert reply.status_code == 400
    assert reply.json()["error"] == "unauthorized_client"
    assert stack.issuer.audit()[-1]["reason"] == "not_own_token"
    # Nothing reached the shared denylist, so every replica keeps accepting it.
    revoked = {str(m) for m in stack.redis.zrange(PREFIX + "jti", 0, -1)}
    assert jti_of(token) not in revoked
    for url in stack.replicas:
        assert answer(url, token).status_code == 200


def test_revocation_needs_client_authentication_and_ignores_what_is_not_a_token(
    stack: Stack,
) -> None:
    token = token_for(stack, stack.alice)
    unauthenticated = stack.issuer.post_revoke({"token": token})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"] == "invalid_client"
    # RFC 7009 section 2.2: an invalid token is answered 200, nothing revoked.
    garbage = stack.issuer.post_revoke({"token": "not-a-token"}, auth=stack.alice.basic)
    assert garbage.status_code == 200
    assert stack.issuer.audit()[-1]["outcome"] == "ignored"
    assert answer(stack.replicas[0], token).status_code == 200
