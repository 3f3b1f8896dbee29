"""Token verification: raw Ed25519, PyJWT, our verifier (new and repeated tokens), the tutorial.

All figures come from one run on one key. Times for a token the verifier has
not seen are measured in interleaved rounds (raw verify, jwt.decode, verifier
on fresh tokens each round), so a busy machine slows all three alike and the
ratios stay meaningful; each figure is the median over rounds.
"""

from __future__ import annotations

import gc
import secrets
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Figure, per_call_us
from mcp_warden.tokens.jwks import FileJwks
from mcp_warden.tokens.jws import b64url_decode
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier
from tests.support.tokens import AUDIENCE, ISSUER, forge

SECTION = "tokens"
ROUNDS = 7
PER_ROUND = 300
CACHED = 100_000


def _tokens(key: Ed25519PrivateKey, kid: str, count: int, now: int) -> list[str]:
    header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
    return [
        forge(
            key,
            header,
            {
                "iss": ISSUER,
                "sub": f"client-{i % 1000}",
                "aud": AUDIENCE,
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "jti": secrets.token_urlsafe(16),
                "tools": ["web_search", "news_search"],
            },
        )
        for i in range(count)
    ]


def _interleaved(
    fresh: Callable[[int], list[str]], checks: dict[str, Callable[[str], object]]
) -> dict[str, float]:
    """Median microseconds per call of each check, each call on a token not used before.

    The checks take turns in every round, so load on the machine hits them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in checks}
    for _ in range(ROUNDS):
        for name, check in checks.items():
            batch = fresh(PER_ROUND)
            gc.disable()
            try:
                start = time.perf_counter()
                for token in batch:
                    check(token)
                times[name].append((time.perf_counter() - start) / PER_ROUND * 1e6)
            finally:
                gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}


def _verifier(keys: Path, cache_size: int) -> Verifier:
    return Verifier(
        FileJwks(keys / "jwks.json"),
        issuer=ISSUER,
        audience=AUDIENCE,
        denylist=MemoryDenylist(),
        cache_size=cache_size,
    )


def _cache_memory_mb(key: Ed25519PrivateKey, kid: str, keys: Path, now: int) -> float:
    tokens = _tokens(key, kid, CACHED, now)
    verifier = _verifier(keys, cache_size=CACHED)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for token in tokens:
        verifier.verify(token)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(verifier._cache) == CACHED
    return (after - before) / 1e6


def _tutorial_memory_mb() -> float:
    """The tutorial's ACTIVE_TOKENS table holding 100,000 tokens."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = {
        secrets.token_urlsafe(32): {
            "tools": ["web_search", "news_search"],
            "expires": time.time() + 3600,
        }
        for _ in range(CACHED)
    }
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(table) == CACHED
    return (after - before) / 1e6


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        keydir = KeyDir(keys)
        keydir.new()
        kid, key = keydir.signing_key()
        public = key.public_key()
        now = int(time.time())
        verifier = _verifier(keys, cache_size=10_000)

        def raw(token: str) -> None:
            signing_input, _, sig = token.rpartition(".")
            public.verify(b64url_decode(sig), signing_input.encode())

        def decode(token: str) -> None:
            jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)

        medians = _interleaved(
            lambda n: _tokens(key, kid, n, now),
            {"raw": raw, "decode": decode, "ours": verifier.verify},
        )
        raw_med = medians["raw"]

        repeated = _tokens(key, kid, 1, now)[0]
        verifier.verify(repeated)

        # The tutorial's validate_token: a dict lookup, an expiry and a tool check.
        active: dict[str, dict[str, Any]] = {
            secrets.token_urlsafe(32): {"tools": ["web_search"], "expires": now + 3600.0}
        }
        tutorial_token = next(iter(active))

        def validate_token(token: str = tutorial_token, tool: str = "web_search") -> bool:
            entry = active.get(token)
            if not entry or time.time() > entry["expires"]:
                return False
            return tool in entry["tools"]

        hits: dict[str, list[float]] = {"repeated": [], "floor": []}
        for _ in range(ROUNDS):  # taking turns, like the fresh-token figures
            hits["repeated"].append(
                per_call_us(lambda: verifier.verify(repeated), number=20_000, repeat=1)
            )
            hits["floor"].append(per_call_us(validate_token, number=20_000, repeat=1))
        repeated_us, floor_us = (statistics.median(hits[k]) for k in ("repeated", "floor"))
        ours_mb = _cache_memory_mb(key, kid, keys, now)
        tutorial_mb = _tutorial_memory_mb()

    raw_name = "raw Ed25519 verify (cryptography)"
    return [
        Figure(SECTION, raw_name, raw_med, "us"),
        Figure(
            SECTION, "jwt.decode (PyJWT, EdDSA, aud+iss)", medians["decode"], "us",
            raw_name, raw_med, "about 1.6-1.8x (reference)",
        ),
        Figure(
            SECTION, "Verifier.verify, token not seen before", medians["ours"], "us",
            raw_name, raw_med, "<= 1.25x",
        ),
        Figure(
            SECTION, "Verifier.verify, repeated token (cache + revocation check)", repeated_us,
            "us", "tutorial validate_token (dict lookup)", floor_us, "<= 5 us",
        ),
        Figure(SECTION, "tutorial validate_token (dict lookup, the floor)", floor_us, "us"),
        Figure(
            SECTION, f"memory for {CACHED:,} cached tokens", ours_mb, "MB",
            f"tutorial ACTIVE_TOKENS with {CACHED:,} tokens", tutorial_mb,
        ),
    ]  # fmt: skip
