"""Every bad input of issue 10 against a real `mcp-warden issuer serve` over TLS.

Each gets its RFC 6749 section 5.2 error code (with the status and headers
the RFC asks for), no token, and one audit line naming the reason; no audit
line and no answer holds a secret, an assertion or a token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from mcp_warden.tokens.jws import b64url_encode
from tests.issuer.lab import ASSERTION_TYPE, Registered, RunningIssuer, issuer_lab

pytestmark = pytest.mark.slow  # real issuer / serve / CLI processes

GRANT = {"grant_type": "client_credentials"}


@dataclass
class World:
    issuer: RunningIssuer
    secret_client: Registered
    key_client: Registered
    removed: Registered
    sent: list[str]  # every secret and assertion sent: none may show up in the audit log


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with issuer_lab(tmp_path_factory.mktemp("bad-input")) as lab:
        secret_client = lab.add_client("svc", ["web_search", "extract_url"])
        key_client = lab.add_client("keyed", ["web_search"], key=True)
        removed = lab.add_client("gone", ["web_search"])
        done = lab.cli("clients", "remove", removed.client_id)
        assert done.returncode == 0, done.stderr
        with lab.issuer() as issuer:
            sent = [s for s in (secret_client.secret, removed.secret) if s]
            yield World(issuer, secret_client, key_client, removed, sent)


def jwt_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        **GRANT,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return b64url_encode(json.dumps(doc).encode())

    return f"{part(header)}.{part(claims)}."


def key_claims(w: World) -> dict[str, Any]:
    now = int(time.time())
    cid = w.key_client.client_id
    return {"iss": cid, "sub": cid, "aud": w.issuer.issuer, "exp": now + 60, "jti": f"j{now}"}


def hs256_with_public_key(w: World) -> str:
    """The key-confusion attack: HMAC keyed with the client's public key bytes."""
    assert w.key_client.key is not None
    public = w.key_client.key.public_key().public_bytes_raw()
    return jwt.encode(key_claims(w), public, algorithm="HS256")


def replayed(w: World) -> httpx.Response:
    assertion = w.key_client.assertion(w.issuer.issuer)
    w.sent.append(assertion)
    first = w.issuer.post_token(jwt_form(assertion))
    assert first.status_code == 200, first.text
    w.sent.append(first.json()["access_token"])
    return w.issuer.post_token(jwt_form(assertion))


def with_assertion(make: Callable[[World], str]) -> Callable[[World], httpx.Response]:
    def send(w: World) -> httpx.Response:
        assertion = make(w)
        w.sent.append(assertion)
        return w.issuer.post_token(jwt_form(assertion))

    return send


def basic(
    pick: Callable[[World], Registered], secret: str | None = None, **form: str
) -> Callable[[World], httpx.Response]:
    def send(w: World) -> httpx.Response:
        client = pick(w)
        if secret is not None:
            client = Registered(client.client_id, secret)
        return w.issuer.post_token({**GRANT, **form}, auth=client.basic)

    return send


def raw(
    body: bytes | Callable[[], Iterator[bytes]], **headers: str
) -> Callable[[World], httpx.Response]:
    def send(w: World) -> httpx.Response:
        content = body() if callable(body) else body
        sent = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        return w.issuer.post_token(auth=w.secret_client.basic, content=content, headers=sent)

    return send


def endless() -> Iterator[bytes]:
    """A chunked body with no Content-Length that never ends on its own (64 KiB, then stop)."""
    yield b"grant_type=client_credentials&scope="
    for _ in range(64):
        yield b"a" * 1024


SECRET = lambda w: w.secret_client  # noqa: E731
UNKNOWN = Registered("mcpw_000000000000000000000000", "mcpws_not-a-secret-of-anyone")

# name -> (request, status, error, audit reason)
CASES: dict[str, tuple[Callable[[World], httpx.Response], int, str, str]] = {
    "wrong secret": (basic(SECRET, "mcpws_wrong"), 401, "invalid_client", "invalid_secret"),
    "unknown client": (basic(lambda w: UNKNOWN), 401, "invalid_client", "unknown_client"),
    "removed client": (basic(lambda w: w.removed), 401, "invalid_client", "unknown_client"),
    "replayed assertion": (replayed, 400, "invalid_client", "assertion_replayed"),
    "expired assertion": (
        with_assertion(lambda w: w.key_client.assertion(w.issuer.issuer, exp=int(time.time()) - 5)),
        400,
        "invalid_client",
        "assertion_expired",
    ),
    "assertion for another audience": (
        with_assertion(lambda w: w.key_client.assertion("https://other.example")),
        400,
        "invalid_client",
        "assertion_audience",
    ),
    "alg none assertion": (
        with_assertion(lambda w: unsigned(key_claims(w), {"alg": "none", "typ": "JWT"})),
        400,
        "invalid_client",
        "assertion_algorithm",
    ),
    "HS256 assertion": (
        with_assertion(hs256_with_public_key),
        400,
        "invalid_client",
        "assertion_algorithm",
    ),
    "unknown grant type": (
        basic(SECRET, grant_type="password"),
        400,
        "unsupported_grant_type",
        "unsupported_grant_type",
    ),
    "scope the client may not have": (
        basic(SECRET, scope="usage"),
        400,
        "invalid_scope",
        "invalid_scope",
    ),
    "unknown resource": (
        basic(SECRET, resource="https://elsewhere.example/mcp"),
        400,
        "invalid_target",
        "unknown_resource",
    ),
    "body over the limit": (
        raw(b"grant_type=client_credentials&scope=" + b"a" * 20_000),
        400,
        "invalid_request",
        "body_too_large",
    ),
    "body over the limit, no Content-Length": (
        raw(endless),
        400,
        "invalid_request",
        "body_too_large",
    ),
    "malformed form body": (
        raw(b"grant_type=client_credentials&scope"),
        400,
        "invalid_request",
        "malformed_body",
    ),
    "form body not UTF-8": (
        raw(b"grant_type=client_credentials&scope=%ff"),
        400,
        "invalid_request",
        "malformed_body",
    ),
    "a parameter twice": (
        raw(b"grant_type=client_credentials&grant_type=client_credentials"),
        400,
        "invalid_request",
        "duplicate_parameter",
    ),
    "not a form": (
        raw(b'{"grant_type": "client_credentials"}', **{"Content-Type": "application/json"}),
        400,
        "invalid_request",
        "malformed_body",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_its_error_code_no_token_and_an_audit_line(world: World, case: str) -> None:
    send, status, error, reason = CASES[case]
    issued_before = sum(line["outcome"] == "issued" for line in world.issuer.audit())
    lines_before = len(world.issuer.audit())
    reply = send(world)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"] == error
    assert body["error_description"]  # one line that says what to fix
    assert "\n" not in body["error_description"]
    assert "access_token" not in body
    assert reply.headers["cache-control"] == "no-store"
    if status == 401:
        assert reply.headers["www-authenticate"].startswith("Basic ")
    audit = world.issuer.audit()
    new = audit[lines_before:]
    refusals = [line for line in new if line["outcome"] == "refused"]
    assert [(r["reason"], r["error"], r["status"]) for r in refusals] == [(reason, error, status)]
    assert sum(line["outcome"] == "issued" for line in audit) == issued_before + (
        1 if case == "replayed assertion" else 0  # its first use, the one that was legitimate
    )
    log = world.issuer.audit_log.read_text(encoding="utf-8")
    assert not any(secret in log for secret in world.sent)


def test_refusals_name_the_client_they_claim(world: World) -> None:
    reply = basic(SECRET, "mcpws_wrong")(world)
    assert reply.status_code == 401
    last = world.issuer.audit()[-1]
    assert last["client_id"] == world.secret_client.client_id
    assert last["tools"] is None
    assert last["jti"] is None
    assert {"time", "event", "outcome", "reason", "client"} <= set(last)


def test_a_good_request_still_works_after_all_that(world: World) -> None:
    reply = world.issuer.post_token(GRANT, auth=world.secret_client.basic)
    assert reply.status_code == 200, reply.text
    claims = jwt.decode(reply.json()["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == claims["sub"] == world.secret_client.client_id
    line = world.issuer.audit()[-1]
    assert (line["outcome"], line["jti"], line["tools"]) == (
        "issued",
        claims["jti"],
        ["extract_url", "web_search"],
    )


def test_failed_authentication_is_rate_limited(tmp_path_factory: pytest.TempPathFactory) -> None:
    with issuer_lab(tmp_path_factory.mktemp("limits"), MCP_ISSUER_AUTH_FAILURES="3") as lab:
        client = lab.add_client("svc", ["web_search"])
        wrong = Registered(client.client_id, "mcpws_wrong")
        with lab.issuer() as issuer:
            for _ in range(3):
                assert issuer.post_token(GRANT, auth=wrong.basic).status_code == 401
            # Now even the right secret waits: guessing costs time, not just a 401.
            limited = issuer.post_token(GRANT, auth=client.basic)
            assert limited.status_code == 429, limited.text
            assert limited.json()["error"] == "temporarily_unavailable"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert issuer.audit()[-1]["reason"] == "rate_limited"
            # Another client from another address would not be limited: see test_ratelimit.


def test_basic_credentials_are_form_urlencoded(world: World) -> None:
    """RFC 6749 section 2.3.1: a client_id and secret are urlencoded before base64."""
    assert world.secret_client.secret is not None
    raw_pair = f"{world.secret_client.client_id}:{world.secret_client.secret}"
    plain = "Basic " + base64.b64encode(raw_pair.encode()).decode()
    # Our ids and secrets need no escaping, so both spellings are the same credentials.
    assert world.issuer.post_token(GRANT, auth=plain).status_code == 200
