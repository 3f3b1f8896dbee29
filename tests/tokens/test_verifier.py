"""The verifier's accepting side, its cache, key rotation and revocation, and PyJWT as oracle."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_warden.config import Settings
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.toolnames import TOOL_NAME
from mcp_warden.tokens.verifier import Verifier
from tests.support.clock import NOW
from tests.support.http_server import RecordingServer
from tests.support.tokens import AUDIENCE, ISSUER, TokenLab


def reason(lab: TokenLab, token: str) -> str:
    with pytest.raises(TokenError) as info:
        lab.verifier.verify(token)
    return info.value.reason


def test_valid_token_gives_typed_claims(lab: TokenLab) -> None:
    claims = lab.verifier.verify(lab.token(claims=lab.claims(tools=["b", "a"])))
    assert claims == Claims(
        iss=ISSUER,
        sub="alice",
        aud=AUDIENCE,
        iat=NOW,
        nbf=NOW,
        exp=NOW + 600,
        jti="jti-0001",
        tools=frozenset({"a", "b"}),
        kid=lab.kid,
    )
    assert claims.allows("a")
    assert not claims.allows("c")


def test_nbf_is_optional(lab: TokenLab) -> None:
    assert lab.verifier.verify(lab.token(claims=lab.claims(nbf=None))).nbf is None


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_typ_compared_as_rfc_7515_says(lab: TokenLab, typ: str) -> None:
    assert lab.verifier.verify(lab.token(header=lab.header(typ=typ))).sub == "alice"


@pytest.mark.parametrize("typ", ["jwt", "application/jwt", "at+jwt ", "at-jwt", "JOSE"])
def test_other_typ_refused(lab: TokenLab, typ: str) -> None:
    assert reason(lab, lab.token(header=lab.header(typ=typ))) == "wrong_type"


def test_leeway_applies_to_iat_and_nbf_only(lab: TokenLab) -> None:
    ahead = lab.claims(iat=NOW + 30, nbf=NOW + 30, exp=NOW + 630)
    assert lab.verifier.verify(lab.token(claims=ahead)).iat == NOW + 30
    assert reason(lab, lab.token(claims=lab.claims(exp=NOW))) == "expired"
    assert lab.verifier.verify(lab.token(claims=lab.claims(exp=NOW + 1))).exp == NOW + 1


def test_lifetime_equal_to_max_is_accepted(lab: TokenLab) -> None:
    claims = lab.claims(iat=NOW - 100, nbf=None, exp=NOW - 100 + 86_400)
    assert lab.verifier.verify(lab.token(claims=claims)).exp == NOW + 86_300


def test_unknown_header_fields_are_ignored_and_never_fetched(
    lab: TokenLab, recorder: RecordingServer
) -> None:
    header = lab.header(jku=f"{recorder.url}/jwks.json", x5u=f"{recorder.url}/x.pem", cty="x")
    assert lab.verifier.verify(lab.token(header=header)).sub == "alice"
    assert recorder.requests == []


class TestCache:
    def test_repeated_token_is_served_from_the_cache(self, lab: TokenLab) -> None:
        token = lab.token()
        first = lab.verifier.verify(token)
        assert lab.verifier.verify(token) is first
        # keyed by a digest: the cache keeps no bearer token
        assert list(lab.verifier._cache) == [hashlib.sha256(token.encode()).digest()]

    def test_entry_never_outlives_exp(self, lab: TokenLab) -> None:
        token = lab.token(claims=lab.claims(exp=NOW + 10))
        lab.verifier.verify(token)
        lab.clock.now = NOW + 9.999
        lab.verifier.verify(token)
        lab.clock.now = NOW + 10
        assert reason(lab, token) == "expired"
        assert lab.verifier._cache == {}

    def test_revocation_checked_on_every_use(self, lab: TokenLab) -> None:
        token = lab.token()
        lab.verifier.verify(token)
        lab.denylist.revoke_jti("jti-0001", NOW + 600)
        assert reason(lab, token) == "revoked"

    def test_sub_revocation_on_a_cached_token(self, lab: TokenLab) -> None:
        token = lab.token()
        lab.verifier.verify(token)
        lab.denylist.revoke_sub("alice", NOW)
        assert reason(lab, token) == "revoked"
        # a token issued after the sub revocation is fine
        later = lab.claims(iat=NOW + 1, nbf=NOW + 1, exp=NOW + 601, jti="jti-0002")
        lab.clock.now = NOW + 1
        assert lab.verifier.verify(lab.token(claims=later)).jti == "jti-0002"

    def test_retired_key_refused_even_when_cached(self, lab: TokenLab) -> None:
        token = lab.token()
        assert lab.verifier.verify(token).kid == lab.kid
        lab.rotate(retire=True)
        assert reason(lab, token) == "unknown_key"

    def test_rotation_and_retiring_another_key_keep_cached_tokens(self, lab: TokenLab) -> None:
        token = lab.token()
        lab.verifier.verify(token)
        lab.rotate(retire=False)
        assert lab.verifier.verify(token).sub == "alice"  # old key still published
        old = lab.kid
        lab.rotate(retire=False)
        lab.keydir.retire(old, max_ttl=86_400, force=True)
        assert lab.verifier.verify(token).sub == "alice"
        lab.clock.mono += 2.0
        assert lab.verifier.verify(lab.token()).sub == "alice"  # newest key

    def test_cache_is_bounded(self, tmp_path: Path) -> None:
        lab = TokenLab(tmp_path / "keys")
        verifier = Verifier(
            lab.jwks,
            issuer=ISSUER,
            audience=AUDIENCE,
            denylist=lab.denylist,
            clock=lab.clock.time,
            cache_size=3,
        )
        tokens = [lab.token(claims=lab.claims(jti=f"j{i}")) for i in range(10)]
        for token in tokens:
            verifier.verify(token)
        assert len(verifier._cache) == 3
        assert all(verifier.verify(t).jti == f"j{i}" for i, t in enumerate(tokens))

    def test_cache_can_be_off(self, tmp_path: Path) -> None:
        lab = TokenLab(tmp_path / "keys")
        verifier = Verifier(
            lab.jwks, issuer=ISSUER, audience=AUDIENCE, denylist=lab.denylist, cache_size=0
        )
        verifier.verify(lab.token(claims=lab.claims(iat=None, exp=None) | _live()))
        assert verifier._cache == {}


def _live() -> dict[str, int]:
    now = int(time.time())
    return {"iat": now, "nbf": now, "exp": now + 60}


def test_unknown_kid_triggers_one_rate_limited_reload(lab: TokenLab) -> None:
    old = lab.kid
    lab.kid = lab.keydir.new().kid  # published, but the verifier has not looked yet
    token = lab.token()
    assert reason(lab, token) == "unknown_key"  # within the JWKS interval since start
    lab.clock.mono += 1.0
    assert lab.verifier.verify(token).kid == lab.kid
    assert old != lab.kid


class TestCheckStillValid:
    def test_ok_then_expired(self, lab: TokenLab) -> None:
        claims = lab.verifier.verify(lab.token())
        lab.verifier.check_still_valid(claims)
        lab.clock.now = NOW + 600
        with pytest.raises(TokenError) as info:
            lab.verifier.check_still_valid(claims)
        assert info.value.reason == "expired"

    def test_revoked(self, lab: TokenLab) -> None:
        claims = lab.verifier.verify(lab.token())
        lab.denylist.revoke_sub("alice", NOW)
        with pytest.raises(TokenError) as info:
            lab.verifier.check_still_valid(claims)
        assert info.value.reason == "revoked"

    def test_key_retired(self, lab: TokenLab) -> None:
        claims = lab.verifier.verify(lab.token())
        lab.rotate(retire=True)
        with pytest.raises(TokenError) as info:
            lab.verifier.check_still_valid(claims)
        assert info.value.reason == "unknown_key"


class _Unavailable(MemoryDenylist):
    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        raise TokenError("revocation_unavailable", "denylist unreachable for too long")


def test_denylist_unavailable_is_a_refusal(lab: TokenLab) -> None:
    verifier = Verifier(
        lab.jwks, issuer=ISSUER, audience=AUDIENCE, denylist=_Unavailable(), clock=lab.clock.time
    )
    with pytest.raises(TokenError) as info:
        verifier.verify(lab.token())
    assert info.value.reason == "revocation_unavailable"


def test_from_settings_verifies_a_minted_token(tmp_path: Path) -> None:
    lab = TokenLab(tmp_path / "keys")
    cfg = Settings(
        keys_dir=lab.path, jwks=str(lab.path / "jwks.json"), token_audience="https://mcp.example"
    )
    token = mint(
        cfg.keys_dir,
        issuer=cfg.token_issuer,
        sub="svc",
        tools=["a"],
        ttl=60,
        audience="https://mcp.example",
    )
    verifier = Verifier.from_settings(cfg, MemoryDenylist())
    try:
        assert verifier.verify(token).aud == "https://mcp.example"
    finally:
        verifier.close()


# -- PyJWT as an oracle -----------------------------------------------------

tool_names = st.from_regex(TOOL_NAME, fullmatch=True)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sub=st.text(min_size=1, max_size=40),
    tools=st.lists(tool_names, min_size=0, max_size=5),
    ttl=st.integers(min_value=1, max_value=86_400),
    age=st.integers(min_value=-30, max_value=86_400),
)
def test_everything_we_accept_pyjwt_accepts_with_the_same_claims(
    lab: TokenLab, sub: str, tools: list[str], ttl: int, age: int
) -> None:
    now = int(time.time())  # PyJWT reads the real clock
    lab.clock.now = now
    claims = lab.claims(sub=sub, tools=tools, iat=now - age, nbf=now - age, exp=now - age + ttl)
    token = lab.token(claims=claims)
    if claims["exp"] <= now:
        assert reason(lab, token) == "expired"
        return
    ours = lab.verifier.verify(token)
    theirs = jwt.decode(
        token,
        lab.key.public_key(),
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway=30,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
    )
    assert theirs == claims
    assert ours.as_json() == {**claims, "tools": sorted(set(tools)), "kid": lab.kid}
