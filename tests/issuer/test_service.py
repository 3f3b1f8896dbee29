"""The issuer app in-process (Starlette's TestClient): metadata, JWKS, tokens, revocation.

The real-process tests (test_bad_input, test_two_issuers, test_revocation,
test_python_clients) run the same app as `issuer serve`; these pin each rule
with the exact token, header and claim, quickly.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from mcp.shared.auth import OAuthMetadata
from starlette.testclient import TestClient

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.issuer.app import issuer_app
from mcp_warden.issuer.clients import (
    Client,
    ClientsError,
    client_jwk,
    hash_secret,
    new_client_id,
    new_secret,
)
from mcp_warden.issuer.keys import IssuerKeys
from mcp_warden.issuer.ratelimit import FailureLimiter
from mcp_warden.issuer.registry import RegistryUnavailable, open_registry
from mcp_warden.issuer.service import Issuer, check_issuer_url
from mcp_warden.server.audit import AuditLog
from mcp_warden.tokens.jwks import FileJwks, public_jwk
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier

ISSUER = "https://issuer.test"
AUDIENCE = "https://mcp.test/mcp"
OTHER = "https://other-mcp.test/mcp"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT = {"grant_type": "client_credentials"}


@dataclass
class Lab:
    http: TestClient
    issuer: Issuer
    settings: Settings
    audit_path: Path
    mono: list[float]

    def add(self, tools: list[str], *, ttl: int = 600, jwk: dict[str, str] | None = None) -> Any:
        """A client in the registry: (client, secret) for a secret client, client for a key one."""
        secret = None if jwk is not None else new_secret()
        client = Client(
            client_id=new_client_id(),
            name=f"c{uuid.uuid4().hex[:8]}",
            tools=tuple(sorted(tools)),
            ttl=ttl,
            created=int(time.time()),
            secret_hash=hash_secret(secret) if secret is not None else None,
            jwk=jwk,
        )
        self.issuer.registry.add(client)
        return (client, secret) if secret is not None else client

    def token(self, form: dict[str, str], auth: tuple[Client, str] | None = None) -> Any:
        headers = {}
        if auth is not None:
            raw = f"{auth[0].client_id}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return self.http.post("/token", data=form, headers=headers)

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.audit_path.read_text().splitlines()]

    def verifier(self, audience: str = AUDIENCE) -> Verifier:
        jwks = FileJwks(self.settings.keys_dir / "jwks.json")
        return Verifier(jwks, issuer=ISSUER, audience=audience, denylist=MemoryDenylist())


def build(tmp_path: Path, **overrides: Any) -> Iterator[Lab]:
    KeyDir(tmp_path / "keys").new()
    fields: dict[str, Any] = {
        "keys_dir": tmp_path / "keys",
        "clients_url": f"sqlite:///{tmp_path / 'clients.db'}",
        "revocation_url": "memory://",
        "token_issuer": ISSUER,
        "token_audience": AUDIENCE,
        **overrides,
    }
    settings = Settings(**fields)
    mono = [1000.0]
    keys = IssuerKeys(KeyDir(settings.keys_dir), refresh_seconds=1.0, monotonic=lambda: mono[0])
    issuer = Issuer(
        settings,
        registry=open_registry(settings),
        keys=keys,
        denylist=MemoryDenylist(),
        monotonic=lambda: mono[0],
    )
    audit_path = tmp_path / "audit.jsonl"
    app = issuer_app(issuer, AuditLog.open(audit_path), FailureLimiter(1000))
    with TestClient(app, base_url=ISSUER) as http:
        yield Lab(http, issuer, settings, audit_path, mono)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from build(tmp_path)


def signed(key: Any, alg: str, client_id: str, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=alg)


def jwt_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        **GRANT,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


def keyed(lab: Lab, kind: str = "ed25519") -> tuple[Any, str, Client]:
    """(private key, alg, client) for a private_key_jwt client of that key type."""
    if kind == "ed25519":
        private: Any = Ed25519PrivateKey.generate()
        jwk = public_jwk(private.public_key())
        alg = "EdDSA"
    elif kind == "p256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
        alg = "ES256"
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        alg = "RS256"
    client = lab.add(["web_search"], jwk=client_jwk(jwk))
    return private, alg, client


# -- metadata, JWKS, authorize -------------------------------------------------------


def test_metadata_is_rfc_8414_and_the_python_sdk_reads_it(lab: Lab) -> None:
    lab.add(["web_search", "extract_url"])
    reply = lab.http.get("/.well-known/oauth-authorization-server")
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == ISSUER + "/token"
    assert doc["jwks_uri"] == ISSUER + "/jwks.json"
    assert doc["revocation_endpoint"] == ISSUER + "/revoke"
    assert doc["authorization_endpoint"] == ISSUER + "/authorize"
    assert doc["response_types_supported"] == []  # required by RFC 8414; we serve none
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == ["EdDSA", "ES256", "RS256"]
    assert doc["scopes_supported"] == ["extract_url", "web_search"]
    parsed = OAuthMetadata.model_validate(doc)  # the Python client's own model
    assert str(parsed.issuer) == ISSUER


def test_scopes_supported_follows_the_registry_within_a_second(lab: Lab) -> None:
    lab.add(["web_search"])
    assert lab.issuer.metadata()["scopes_supported"] == ["web_search"]
    lab.add(["usage"])
    lab.mono[0] += 1.0
    assert lab.issuer.metadata()["scopes_supported"] == ["usage", "web_search"]


def test_an_issuer_with_a_path_serves_under_it(tmp_path: Path) -> None:
    for lab in build(tmp_path, token_issuer=ISSUER + "/warden"):
        client, secret = lab.add(["web_search"])
        doc = lab.http.get("/.well-known/oauth-authorization-server/warden").json()
        assert doc["issuer"] == ISSUER + "/warden"
        assert doc["token_endpoint"] == ISSUER + "/warden/token"
        assert lab.http.get("/.well-known/oauth-authorization-server").status_code == 404
        raw = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
        ok = lab.http.post("/warden/token", data=GRANT, headers={"Authorization": "Basic " + raw})
        assert ok.status_code == 200, ok.text


def test_jwks_holds_public_keys_only_with_the_replicas_max_age(lab: Lab) -> None:
    reply = lab.http.get("/jwks.json")
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "public, max-age=60"  # MCP_JWKS_MAX_AGE_SECONDS
    keys = reply.json()["keys"]
    assert [set(k) for k in keys] == [{"kty", "crv", "x", "kid", "alg", "use"}]
    assert keys[0]["kid"] == KeyDir(lab.settings.keys_dir).signing_key()[0]


def test_a_new_signing_key_signs_and_is_published_within_the_refresh(lab: Lab) -> None:
    client, secret = lab.add(["web_search"])
    old = KeyDir(lab.settings.keys_dir).signing_key()[0]
    new = KeyDir(lab.settings.keys_dir).new().kid
    first = lab.token(GRANT, (client, secret)).json()["access_token"]
    assert jwt.get_unverified_header(first)["kid"] == old  # not yet looked
    lab.mono[0] += 1.0  # MCP_JWKS_REFRESH_SECONDS later
    second = lab.token(GRANT, (client, secret)).json()["access_token"]
    assert jwt.get_unverified_header(second)["kid"] == new
    assert {k["kid"] for k in lab.http.get("/jwks.json").json()["keys"]} == {old, new}


def test_authorize_answers_unsupported_response_type(lab: Lab) -> None:
    reply = lab.http.get("/authorize", params={"response_type": "code", "client_id": "x"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "unsupported_response_type"
    assert "client_credentials" in reply.json()["error_description"]


# -- tokens ------------------------------------------------------------------------


def test_the_token_is_token_mints_at_jwt_with_rfc_9068_claims(lab: Lab) -> None:
    client, secret = lab.add(["web_search", "extract_url"], ttl=900)
    reply = lab.token(GRANT, (client, secret))
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "extract_url web_search"
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("EdDSA", "at+jwt")
    claims = lab.verifier().verify(token)  # the servers' own verifier accepts it
    assert claims.sub == client.client_id
    assert claims.exp - claims.iat == 900
    assert claims.tools == {"web_search", "extract_url"}
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["client_id"] == client.client_id
    assert raw["scope"] == "extract_url web_search"
    assert raw["aud"] == AUDIENCE
    line = lab.audit()[-1]
    assert (line["outcome"], line["jti"], line["tools"]) == (
        "issued",
        raw["jti"],
        ["extract_url", "web_search"],
    )
    assert secret not in lab.audit_path.read_text()
    assert token not in lab.audit_path.read_text()


def test_granted_is_requested_and_allowed(lab: Lab) -> None:
    client, secret = lab.add(["web_search", "extract_url"])
    reply = lab.token({**GRANT, "scope": "web_search usage"}, (client, secret))
    assert reply.json()["scope"] == "web_search"
    refused = lab.token({**GRANT, "scope": "usage"}, (client, secret))
    assert refused.json()["error"] == "invalid_scope"
    assert "extract_url web_search" in refused.json()["error_description"]
    malformed = lab.token({**GRANT, "scope": "web_search  extract_url"}, (client, secret))
    assert malformed.json()["error"] == "invalid_scope"


def test_lifetime_is_the_clients_ttl_capped_at_the_maximum(tmp_path: Path) -> None:
    for lab in build(tmp_path, token_max_ttl=300):
        client, secret = lab.add(["web_search"], ttl=3600)  # registered before the cap
        assert lab.token(GRANT, (client, secret)).json()["expires_in"] == 300


def test_resource_picks_the_audience_among_those_served(tmp_path: Path) -> None:
    for lab in build(tmp_path, issuer_resources=(AUDIENCE, OTHER)):
        client, secret = lab.add(["web_search"])
        reply = lab.token({**GRANT, "resource": OTHER}, (client, secret))
        assert lab.verifier(OTHER).verify(reply.json()["access_token"]).aud == OTHER
        missing = lab.token(GRANT, (client, secret))
        assert missing.json()["error"] == "invalid_target"
        twice = lab.http.post(
            "/token",
            content=f"grant_type=client_credentials&resource={AUDIENCE}&resource={OTHER}",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "Basic "
                + base64.b64encode(f"{client.client_id}:{secret}".encode()).decode(),
            },
        )
        assert twice.json()["error"] == "invalid_target"


def test_client_secret_post_and_its_failures(lab: Lab) -> None:
    client, secret = lab.add(["web_search"])
    ok = lab.token({**GRANT, "client_id": client.client_id, "client_secret": secret})
    assert ok.status_code == 200
    wrong = lab.token({**GRANT, "client_id": client.client_id, "client_secret": "mcpws_x"})
    assert wrong.status_code == 400  # not Basic: no challenge (RFC 6749 section 5.2)
    assert wrong.json()["error"] == "invalid_client"
    assert "www-authenticate" not in wrong.headers


def test_one_authentication_method_exactly(lab: Lab) -> None:
    client, secret = lab.add(["web_search"])
    both = lab.token(
        {**GRANT, "client_id": client.client_id, "client_secret": secret}, (client, secret)
    )
    assert both.json()["error"] == "invalid_request"
    assert lab.audit()[-1]["reason"] == "several_auth_methods"
    none = lab.token({**GRANT, "client_id": client.client_id})
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Basic ")
    assert lab.audit()[-1]["reason"] == "no_client_authentication"
    mismatch = lab.token({**GRANT, "client_id": "mcpw_other"}, (client, secret))
    assert mismatch.json()["error"] == "invalid_request"


def test_a_client_uses_the_method_it_was_registered_for(lab: Lab) -> None:
    key, alg, keyed_client = keyed(lab)
    as_secret = lab.token({**GRANT, "client_id": keyed_client.client_id, "client_secret": "x"})
    assert as_secret.json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == "wrong_auth_method"
    client, _ = lab.add(["web_search"])
    as_key = lab.token(jwt_form(signed(key, alg, client.client_id)))
    assert as_key.json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == "wrong_auth_method"


# -- private_key_jwt ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "p256", "rsa2048"])
def test_private_key_jwt_with_each_algorithm(lab: Lab, kind: str) -> None:
    key, alg, client = keyed(lab, kind)
    for audience in (ISSUER, ISSUER + "/token", [ISSUER, "https://else.test"]):
        reply = lab.token(jwt_form(signed(key, alg, client.client_id, aud=audience)))
        assert reply.status_code == 200, (audience, reply.text)
        assert lab.verifier().verify(reply.json()["access_token"]).sub == client.client_id


BAD_ASSERTIONS: dict[str, tuple[Callable[[Any, str, str], str], str]] = {
    "sub is not the client": (
        lambda k, a, c: signed(k, a, c, sub="someone-else"),
        "assertion_subject",
    ),
    "lives over five minutes": (
        lambda k, a, c: signed(k, a, c, exp=int(time.time()) + 3600),
        "assertion_lifetime",
    ),
    "no jti": (lambda k, a, c: signed(k, a, c, jti=None), "assertion_claims"),
    "no exp": (lambda k, a, c: signed(k, a, c, exp=None), "assertion_claims"),
    "iat far ahead": (
        lambda k, a, c: signed(k, a, c, iat=int(time.time()) + 600),
        "assertion_not_yet_valid",
    ),
    "another key": (
        lambda k, a, c: signed(Ed25519PrivateKey.generate(), a, c),
        "assertion_signature",
    ),
    "another algorithm than registered": (
        lambda k, a, c: signed(ec.generate_private_key(ec.SECP256R1()), "ES256", c),
        "assertion_algorithm",
    ),
    "HS256 keyed with the public key": (
        lambda k, a, c: signed(k.public_key().public_bytes_raw(), "HS256", c),
        "assertion_algorithm",
    ),
    "not a JWT": (lambda k, a, c: "not.a.jwt", "assertion_malformed"),
}


@pytest.mark.parametrize("case", list(BAD_ASSERTIONS))
def test_bad_assertions_are_invalid_client(lab: Lab, case: str) -> None:
    make, reason = BAD_ASSERTIONS[case]
    key, alg, client = keyed(lab)
    reply = lab.token(jwt_form(make(key, alg, client.client_id), client_id=client.client_id))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == reason


def test_a_wrong_assertion_type_is_refused(lab: Lab) -> None:
    key, alg, client = keyed(lab)
    form = jwt_form(signed(key, alg, client.client_id))
    form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    assert lab.token(form).json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == "assertion_type"


def test_replay_cache_keeps_each_jti_until_the_assertion_expires(lab: Lab) -> None:
    key, alg, client = keyed(lab)
    assertion = signed(key, alg, client.client_id)
    assert lab.token(jwt_form(assertion)).status_code == 200
    assert lab.token(jwt_form(assertion)).json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == "assertion_replayed"
    # The same jti from another client is another assertion.
    key2, alg2, client2 = keyed(lab)
    jti = jwt.decode(assertion, options={"verify_signature": False})["jti"]
    assert lab.token(jwt_form(signed(key2, alg2, client2.client_id, jti=jti))).status_code == 200


# -- client keys at registration ---------------------------------------------------------


def test_client_keys_are_public_and_strong() -> None:
    ed = public_jwk(Ed25519PrivateKey.generate().public_key())
    assert client_jwk(ed)["alg"] == "EdDSA"
    private_ec = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ClientsError, match="private key material"):
        client_jwk(private_ec)
    weak_private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    weak = weak_private.public_key()
    with pytest.raises(ClientsError, match="at least 2048"):
        client_jwk(json.loads(RSAAlgorithm.to_jwk(weak)))
    p384 = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key()))
    with pytest.raises(ClientsError, match="P-384"):
        client_jwk(p384)
    with pytest.raises(ClientsError, match="private key material"):
        client_jwk({"kty": "oct", "k": "c2VjcmV0"})
    with pytest.raises(ClientsError, match="signs EdDSA"):
        client_jwk({**ed, "alg": "ES256"})
    with pytest.raises(ClientsError, match="use"):
        client_jwk({**ed, "use": "enc"})


# -- revocation --------------------------------------------------------------------------


def test_revoking_a_token(lab: Lab) -> None:
    alice, alice_secret = lab.add(["web_search"])
    bob, bob_secret = lab.add(["web_search"])
    token = lab.token(GRANT, (alice, alice_secret)).json()["access_token"]
    raw = f"{bob.client_id}:{bob_secret}".encode()
    other = lab.http.post(
        "/revoke",
        data={"token": token},
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert other.json()["error"] == "unauthorized_client"
    claims = lab.verifier().verify(token)
    assert not lab.issuer.denylist.is_revoked(claims.jti, claims.sub, claims.iat)
    own = lab.http.post(
        "/revoke",
        data={"token": token, "client_id": alice.client_id, "client_secret": alice_secret},
    )
    assert own.status_code == 200
    assert lab.issuer.denylist.is_revoked(claims.jti, claims.sub, claims.iat)
    assert lab.audit()[-1]["outcome"] == "revoked"


# -- failures of the stores and of the settings ----------------------------------------


def test_an_unreachable_registry_is_503_with_retry_after(lab: Lab) -> None:
    client, secret = lab.add(["web_search"])

    class Down:
        def get(self, client_id: str) -> Client | None:
            raise RegistryUnavailable("cannot read the client registry (test)")

    real = lab.issuer.registry
    lab.issuer.registry = Down()  # type: ignore[assignment]
    try:
        reply = lab.token(GRANT, (client, secret))
    finally:
        lab.issuer.registry = real
    assert reply.status_code == 503
    assert reply.json()["error"] == "temporarily_unavailable"
    assert reply.headers["retry-after"] == "5"
    assert lab.audit()[-1]["reason"] == "store_unavailable"


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://auth.example.com", True),
        ("https://auth.example.com/warden", True),
        ("http://127.0.0.1:9000", True),
        ("http://[::1]:9000", True),
        ("http://auth.example.com", False),
        ("https://auth.example.com/?x=1", False),
        ("https://auth.example.com/#x", False),
        ("https://user:pw@auth.example.com", False),
        ("https://auth.example.com:99999", False),
        ("mcp-warden", False),
    ],
)
def test_the_issuer_url(url: str, accepted: bool) -> None:
    if accepted:
        assert check_issuer_url(url) == url
    else:
        with pytest.raises(ConfigError, match="MCP_TOKEN_ISSUER") as caught:
            check_issuer_url(url)
        assert "pw" not in str(caught.value)


def test_open_refuses_settings_that_cannot_work(tmp_path: Path) -> None:
    KeyDir(tmp_path / "keys").new()
    base = Settings(
        keys_dir=tmp_path / "keys",
        clients_url=f"sqlite:///{tmp_path / 'c.db'}",
        revocation_url=f"sqlite:///{tmp_path / 'r.db'}",
        token_issuer=ISSUER,
    )
    Issuer.open(base).close()
    for bad, fix in [
        (replace(base, revocation_url="memory://"), "MCP_REVOCATION_URL"),
        (replace(base, issuer_resources=("not a url",)), "MCP_ISSUER_RESOURCES"),
        (replace(base, keys_dir=tmp_path / "none"), "keys new"),
        (replace(base, clients_url="postgres://x"), "MCP_CLIENTS_URL"),
    ]:
        with pytest.raises(ConfigError, match=fix):
            Issuer.open(bad)


def test_none_and_hs256_are_refused_before_any_key_is_looked_up(lab: Lab) -> None:
    """The algorithm is checked first: even for a client that does not exist."""
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b'{"iss":"mcpw_nobody","sub":"mcpw_nobody"}')
    assertion = f"{header}.{payload.rstrip(b'=').decode()}."
    assert lab.token(jwt_form(assertion)).json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == "assertion_algorithm"
    hs = jwt.encode({"iss": "mcpw_nobody"}, "k" * 32, algorithm="HS256")
    assert lab.token(jwt_form(hs)).json()["error"] == "invalid_client"
    assert lab.audit()[-1]["reason"] == "assertion_algorithm"
