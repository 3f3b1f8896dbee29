"""The small parts on their own: the failure limiter, the form parser, HTTP Basic, secrets."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from mcp_warden.issuer.clients import (
    SECRET_BYTES,
    SECRET_PREFIX,
    Client,
    hash_secret,
    new_client_id,
    new_secret,
)
from mcp_warden.issuer.oauth import (
    MAX_BODY_BYTES,
    OAuthError,
    basic_credentials,
    parse_form,
    read_form,
)
from mcp_warden.issuer.ratelimit import FailureLimiter
from tests.support.server import run


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_per_key_and_refill() -> None:
    mono = Mono()
    limiter = FailureLimiter(3, monotonic=mono)
    keys = ["address:10.0.0.1", "client:a"]
    for _ in range(3):
        assert limiter.retry_after(keys) is None
        limiter.failed(keys)
    assert limiter.retry_after(["client:a"]) == 20  # one failure back per 20 s at 3 a minute
    assert limiter.retry_after(["address:10.0.0.1", "client:b"]) == 20  # the address is limited
    assert limiter.retry_after(["address:10.0.0.2", "client:b"]) is None  # others are not
    mono.now += 20
    assert limiter.retry_after(keys) is None
    limiter.failed(keys)
    assert limiter.retry_after(keys) == 20


def test_limiter_forgets_the_oldest_keys_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mcp_warden.issuer.ratelimit.MAX_KEYS", 2)
    limiter = FailureLimiter(1, monotonic=Mono())
    for key in ("a", "b", "c"):
        limiter.failed([key])
    assert limiter.retry_after(["a"]) is None  # forgotten
    assert limiter.retry_after(["b"]) is not None
    assert limiter.retry_after(["c"]) is not None


def test_form_parsing_is_strict() -> None:
    assert parse_form(b"grant_type=client_credentials&scope=a+b&x=") == {
        "grant_type": "client_credentials",
        "scope": "a b",
    }  # an empty value is absent (RFC 6749 section 3.1)
    assert parse_form(b"") == {}
    for body, reason in [
        (b"a=1&a=2", "duplicate_parameter"),
        (b"a=1&&b=2", "malformed_body"),
        (b"a", "malformed_body"),
        (b"a=%C3%28", "malformed_body"),
        (b"a=\xff", "malformed_body"),
        (b"&".join(b"k%d=v" % i for i in range(40)), "malformed_body"),
    ]:
        with pytest.raises(OAuthError) as caught:
            parse_form(body)
        assert (caught.value.error, caught.value.reason) == ("invalid_request", reason)
    with pytest.raises(OAuthError) as caught:
        parse_form(b"resource=a&resource=b")
    assert caught.value.error == "invalid_target"


def test_read_form_stops_at_the_limit_without_reading_more() -> None:
    pulled = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b"a" * 4096

    async def read() -> str:
        try:
            await read_form("application/x-www-form-urlencoded", None, chunks())
        except OAuthError as exc:
            return exc.reason
        return "read"

    assert run(read) == "body_too_large"
    assert len(pulled) == MAX_BODY_BYTES // 4096 + 1  # not one chunk more than needed

    async def declared() -> str:
        try:
            await read_form("application/x-www-form-urlencoded", str(MAX_BODY_BYTES + 1), chunks())
        except OAuthError as exc:
            return exc.reason
        return "read"

    pulled.clear()
    assert run(declared) == "body_too_large"
    assert pulled == []  # refused on the header alone


def test_basic_credentials() -> None:
    def basic(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert basic_credentials(basic("id:se%3Acret+x")) == ("id", "se:cret x")
    assert basic_credentials("basic " + basic("a:b").split()[1]) == ("a", "b")
    for bad in ["Bearer x", "Basic", "Basic !!!", basic("nocolon"), basic(":x"), basic("x:")]:
        with pytest.raises(ValueError):  # noqa: PT011
            basic_credentials(bad)


def test_secrets_are_256_bits_and_stored_as_hashes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        assert (
            len(base64.urlsafe_b64decode(secret.removeprefix(SECRET_PREFIX) + "=")) == SECRET_BYTES
        )
    secret = new_secret()
    client = Client(new_client_id(), "n", ("t",), 60, 0, secret_hash=hash_secret(secret))
    assert client.check_secret(secret)
    assert not client.check_secret(secret + "x")
    assert secret not in client.to_json()
    assert secret not in repr(client)
    assert Client.from_json(client.to_json()) == client
