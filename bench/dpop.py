"""DPoP proof checking: one fresh proof per request against one raw Ed25519 verify.

Interleaved rounds as in bench/tokens.py: each round signs a batch of fresh
proofs, then times raw Ed25519 verifies of them, `verify_proof` alone, and
the whole per-request check of `serve`'s DpopLayer in-process (proof, the
token from the verifier's cache, the memory replay cache), next to a bearer
request's check (the cached token alone).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Figure
from mcp_warden.tokens.dpop import public_jwk, sign_proof, thumbprint, verify_proof
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.jwks import FileJwks
from mcp_warden.tokens.jws import b64url_decode
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.replay import MemoryReplayCache
from mcp_warden.tokens.revocation import MemoryDenylist
from mcp_warden.tokens.verifier import Verifier
from tests.support.tokens import AUDIENCE, ISSUER

SECTION = "DPoP"
ROUNDS = 7
PER_ROUND = 300
WINDOW = (60.0, 5.0)


def run() -> list[Figure]:
    client = Ed25519PrivateKey.generate()
    public = client.public_key()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        KeyDir(keys).new()
        token = mint(
            keys,
            issuer=ISSUER,
            sub="bench",
            tools=["web_search"],
            ttl=3600,
            audience=AUDIENCE,
            extra_claims={"cnf": {"jkt": thumbprint(public_jwk(client))}},
        )
        verifier = Verifier(
            FileJwks(keys / "jwks.json"),
            issuer=ISSUER,
            audience=AUDIENCE,
            denylist=MemoryDenylist(),
        )
        verifier.verify(token)
        replay = MemoryReplayCache(limit=10 * ROUNDS * PER_ROUND)

        def raw(proof: str) -> None:
            signing_input, _, sig = proof.rpartition(".")
            public.verify(b64url_decode(sig), signing_input.encode())

        def proof_only(proof: str) -> None:
            verify_proof(
                proof, method="POST", url=AUDIENCE, access_token=token, now=time.time(),
                window=WINDOW,
            )  # fmt: skip

        def dpop_request(proof: str) -> None:
            checked = verify_proof(
                proof, method="POST", url=AUDIENCE, access_token=token, now=time.time(),
                window=WINDOW,
            )  # fmt: skip
            claims = verifier.verify(token)
            assert claims.cnf_jkt == checked.jkt
            assert replay.first_use(checked.jkt, checked.jti, checked.iat + WINDOW[0])

        def bearer_request(_proof: str) -> None:
            verifier.verify(token)

        checks: dict[str, Callable[[str], None]] = {
            "raw": raw, "proof": proof_only, "request": dpop_request, "bearer": bearer_request,
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in checks}
        for _ in range(ROUNDS):
            for name, check in checks.items():
                now = time.time()
                batch = [
                    sign_proof(client, method="POST", url=AUDIENCE, now=now, access_token=token)
                    for _ in range(PER_ROUND)
                ]
                gc.disable()
                try:
                    start = time.perf_counter()
                    for proof in batch:
                        check(proof)
                    times[name].append((time.perf_counter() - start) / PER_ROUND * 1e6)
                finally:
                    gc.enable()
    med = {name: statistics.median(values) for name, values in times.items()}
    raw_name = "raw Ed25519 verify of a proof (cryptography)"
    return [
        Figure(SECTION, raw_name, med["raw"], "us"),
        Figure(
            SECTION, "verify_proof, a fresh proof", med["proof"], "us",
            raw_name, med["raw"], "<= 1.3x",
        ),
        Figure(
            SECTION, "DPoP request check (proof + cached token + replay cache)", med["request"],
            "us", raw_name, med["raw"],
        ),
        Figure(SECTION, "bearer request check (cached token)", med["bearer"], "us"),
    ]  # fmt: skip
