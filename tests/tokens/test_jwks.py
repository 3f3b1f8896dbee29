"""JWKS parsing and sources: strict JWKs, file reloads, https fetches against a real TLS server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mcp_warden.config import Settings
from mcp_warden.demo.harness import cli_env, free_port, run_cli
from mcp_warden.errors import ConfigError
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.jwks import (
    FileJwks,
    JwksError,
    UrlJwks,
    open_jwks,
    parse_jwks,
    public_jwk,
    public_key_from_jwk,
)
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier
from tests.support.clock import NOW, FakeClock
from tests.support.http_server import RecordingServer
from tests.support.tokens import AUDIENCE, ISSUER, forge


def jwks_bytes(*keys: Ed25519PrivateKey, extra: list[dict[str, object]] | None = None) -> bytes:
    return json.dumps({"keys": [public_jwk(k.public_key()) for k in keys] + (extra or [])}).encode()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class TestParse:
    def test_keys_by_kid(self) -> None:
        a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        keys = parse_jwks(jwks_bytes(a, b))
        assert {public_jwk(a.public_key())["kid"], public_jwk(b.public_key())["kid"]} == set(keys)
        for kid, key in keys.items():
            assert kid == public_jwk(key)["kid"]

    def test_a_private_key_refuses_the_whole_set(self) -> None:
        a = Ed25519PrivateKey.generate()
        leaked = {**public_jwk(a.public_key()), "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}
        with pytest.raises(JwksError, match="private key"):
            parse_jwks(json.dumps({"keys": [leaked]}).encode())

    def test_kid_must_be_the_thumbprint(self, caplog: pytest.LogCaptureFixture) -> None:
        a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        lying = {**public_jwk(a.public_key()), "kid": public_jwk(b.public_key())["kid"]}
        with caplog.at_level(logging.WARNING):
            assert parse_jwks(json.dumps({"keys": [lying]}).encode()) == {}
        assert "thumbprint" in caplog.text

    def test_other_key_types_and_uses_are_skipped(self) -> None:
        a = Ed25519PrivateKey.generate()
        others: list[dict[str, object]] = [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**public_jwk(Ed25519PrivateKey.generate().public_key()), "use": "enc"},
            {**public_jwk(Ed25519PrivateKey.generate().public_key()), "alg": "Ed25519"},
        ]
        assert list(parse_jwks(jwks_bytes(a, extra=others))) == [public_jwk(a.public_key())["kid"]]

    @pytest.mark.parametrize(
        "doc", [b"", b"[]", b'{"keys": {}}', b'{"keys": [1]}', b"\xff", b'{"nokeys": []}']
    )
    def test_not_a_jwks(self, doc: bytes) -> None:
        with pytest.raises(JwksError):
            parse_jwks(doc)

    @pytest.mark.parametrize(
        "x",
        [
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=",  # padded
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURp",  # unused bits set
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo",  # standard alphabet
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcH",  # 30 bytes
            12,
        ],
    )
    def test_x_must_be_canonical_32_bytes(self, x: object) -> None:
        with pytest.raises(JwksError):
            public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x})


class TestFile:
    def test_missing_file_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="keys new"):
            FileJwks(tmp_path / "jwks.json")

    def test_reloads_when_changed_rate_limited(self, tmp_path: Path) -> None:
        clock, path = FakeClock(), tmp_path / "jwks.json"
        a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        path.write_bytes(jwks_bytes(a))
        source = FileJwks(path, refresh_seconds=1.0, monotonic=clock.monotonic)
        path.write_bytes(jwks_bytes(a, b))
        assert len(source.current()) == 1  # within the stat interval
        clock.mono += 1.0
        assert len(source.current()) == 2

    def test_unknown_kid_reload_at_most_once_per_interval(self, tmp_path: Path) -> None:
        clock, path = FakeClock(), tmp_path / "jwks.json"
        a, b, c = (Ed25519PrivateKey.generate() for _ in range(3))
        path.write_bytes(jwks_bytes(a))
        source = FileJwks(path, refresh_seconds=1.0, monotonic=clock.monotonic)
        clock.mono += 1.0
        path.write_bytes(jwks_bytes(a, b))
        assert len(source.refresh_unknown_kid()) == 2
        path.write_bytes(jwks_bytes(a, b, c))
        clock.mono += 0.5
        assert len(source.refresh_unknown_kid()) == 2  # cooldown
        clock.mono += 0.5
        assert len(source.refresh_unknown_kid()) == 3

    def test_broken_file_keeps_last_good_set(self, tmp_path: Path) -> None:
        clock, path = FakeClock(), tmp_path / "jwks.json"
        a = Ed25519PrivateKey.generate()
        path.write_bytes(jwks_bytes(a))
        source = FileJwks(path, refresh_seconds=1.0, monotonic=clock.monotonic)
        path.write_bytes(b'{"keys": [')
        clock.mono += 1.0
        assert list(source.current()) == [public_jwk(a.public_key())["kid"]]
        path.unlink()
        clock.mono += 1.0
        assert list(source.current()) == [public_jwk(a.public_key())["kid"]]


class TestUrl:
    def test_plain_http_is_refused(self) -> None:
        for url in ("http://127.0.0.1:1/jwks.json", "http://localhost/jwks.json", "ftp://x/"):
            with pytest.raises(ConfigError, match="https"):
                UrlJwks(url)
        with pytest.raises(ConfigError, match="https"):
            open_jwks("http://127.0.0.1:1/jwks.json")

    def test_untrusted_certificate_is_refused(self, jwks_server: RecordingServer) -> None:
        with pytest.raises(ConfigError, match="cannot fetch"):
            UrlJwks(jwks_server.jwks_url)  # default trust store does not know the test CA

    def test_fetch_cache_max_age_and_unknown_kid_cooldown(
        self, jwks_server: RecordingServer
    ) -> None:
        clock = FakeClock()
        a, b, c = (Ed25519PrivateKey.generate() for _ in range(3))
        jwks_server.body = jwks_bytes(a)
        source = UrlJwks(
            jwks_server.jwks_url,
            max_age=60.0,
            cooldown=1.0,
            ssl_context=jwks_server.client_context(),
            monotonic=clock.monotonic,
        )
        try:
            assert len(source.current()) == 1
            assert len(jwks_server.requests) == 1
            jwks_server.body = jwks_bytes(a, b)
            assert len(source.current()) == 1  # cached
            assert len(source.refresh_unknown_kid()) == 1  # cooldown since the first fetch
            clock.mono += 1.0
            assert len(source.refresh_unknown_kid()) == 2
            jwks_server.body = jwks_bytes(a, b, c)
            for _ in range(20):
                source.refresh_unknown_kid()  # an attacker's stream of unknown kids
            assert len(jwks_server.requests) == 2
            clock.mono += 60.0
            assert len(source.current()) == 3  # max age reached
            assert len(jwks_server.requests) == 3
        finally:
            source.close()

    @pytest.mark.parametrize("status", [500, 404, 302])
    def test_failed_fetch_keeps_last_good_set(
        self, jwks_server: RecordingServer, status: int
    ) -> None:
        clock = FakeClock()
        a = Ed25519PrivateKey.generate()
        jwks_server.body = jwks_bytes(a)
        source = UrlJwks(
            jwks_server.jwks_url,
            ssl_context=jwks_server.client_context(),
            monotonic=clock.monotonic,
        )
        try:
            jwks_server.status = status
            clock.mono += 61.0
            assert list(source.current()) == [public_jwk(a.public_key())["kid"]]
            hits = len(jwks_server.requests)
            assert list(source.current()) == [public_jwk(a.public_key())["kid"]]
            assert len(jwks_server.requests) == hits  # no retry before the cooldown
            jwks_server.status, jwks_server.body = 200, b"not json"
            clock.mono += 1.0
            assert list(source.current()) == [public_jwk(a.public_key())["kid"]]
        finally:
            source.close()

    def test_verifier_over_https_retires_a_key_without_restart(
        self, jwks_server: RecordingServer
    ) -> None:
        clock = FakeClock()
        old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        jwks_server.body = jwks_bytes(old)
        source = UrlJwks(
            jwks_server.jwks_url,
            max_age=5.0,
            ssl_context=jwks_server.client_context(),
            monotonic=clock.monotonic,
        )
        verifier = Verifier(
            source, issuer=ISSUER, audience=AUDIENCE, denylist=MemoryDenylist(), clock=clock.time
        )
        claims = {
            "iss": ISSUER,
            "sub": "s",
            "aud": AUDIENCE,
            "iat": NOW,
            "exp": NOW + 60,
            "jti": "j",
            "tools": ["t"],
        }

        def token(key: Ed25519PrivateKey) -> str:
            header = {"alg": "EdDSA", "typ": "at+jwt", "kid": public_jwk(key.public_key())["kid"]}
            return forge(key, header, claims)

        try:
            old_token = token(old)
            assert verifier.verify(old_token).sub == "s"
            jwks_server.body = jwks_bytes(old, new)
            clock.mono += 1.0
            assert verifier.verify(token(new)).sub == "s"  # unknown kid -> one fetch
            jwks_server.body = jwks_bytes(new)
            clock.mono += 5.0
            with pytest.raises(TokenError) as info:
                verifier.verify(old_token)  # cached before, refused now
            assert info.value.reason == "unknown_key"
        finally:
            verifier.close()

    def test_a_failed_fetch_never_prints_the_urls_password_or_query(
        self, jwks_server: RecordingServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="mcp_warden")
        clock = FakeClock()
        port = jwks_server.server_address[1]
        url = f"https://jwksUser7:Pa55w0rd@127.0.0.1:{port}/jwks.json?token=T0kenValue#Frag"
        jwks_server.body = jwks_bytes(Ed25519PrivateKey.generate())
        source = UrlJwks(url, ssl_context=jwks_server.client_context(), monotonic=clock.monotonic)
        try:
            jwks_server.status = 500
            clock.mono += 61.0
            assert len(source.current()) == 1  # the last good set, and a warning
        finally:
            source.close()
        with pytest.raises(ConfigError) as failed:  # the first fetch fails: an error
            UrlJwks(url)  # the default trust store does not know the test CA
        shown = f"https://127.0.0.1:{port}/jwks.json"
        assert str(failed.value) == (
            f"cannot fetch a JWKS from {shown}; check MCP_JWKS and the issuer"
        )
        warnings = [r.getMessage() for r in caplog.records]
        kept = f"JWKS {shown} not fetched, keeping the last good set: "
        assert warnings[0] == f"{kept}HTTP status 500"
        assert warnings[1].startswith(kept)
        for text in [str(failed.value), *warnings]:
            for secret in ("jwksUser7", "Pa55w0rd", "T0kenValue", "Frag"):
                assert secret not in text

    def test_a_url_whose_password_breaks_the_address_is_refused_unprinted(self) -> None:
        with pytest.raises(ConfigError) as failed:
            UrlJwks("https://issuer:pa/55?w@jwks.example/jwks.json")
        assert str(failed.value).startswith("MCP_JWKS (a URL that does not parse) is not a valid")
        assert "55" not in str(failed.value)

    @pytest.mark.slow
    def test_the_cli_prints_an_unreachable_jwks_url_without_its_secrets(
        self, tmp_path: Path
    ) -> None:
        url = f"https://jwksUser7:Pa55w0rd@127.0.0.1:{free_port()}/jwks.json?token=T0kenValue"
        done = run_cli(["token", "verify", "x.y.z"], cli_env(MCP_JWKS=url))
        assert done.returncode == 2, done.stderr
        assert "cannot fetch a JWKS from https://127.0.0.1:" in done.stderr
        for secret in ("jwksUser7", "Pa55w0rd", "T0kenValue"):
            assert secret not in done.stderr

    def test_from_settings_picks_the_source(self, tmp_path: Path) -> None:
        path = tmp_path / "jwks.json"
        path.write_bytes(jwks_bytes(Ed25519PrivateKey.generate()))
        assert isinstance(open_jwks(str(path)), FileJwks)
        verifier = Verifier.from_settings(Settings(jwks=str(path)), MemoryDenylist())
        verifier.close()
