"""DPoP proof checking: one fresh proof per request against one raw Ed25519 verify.

Interleaved rounds as in bench/tokens.py: each round signs a batch of fresh
proofs, then times raw Ed25519 verifies of them, `verify_proof` alone, and
the whole per-request check of `serve`'s DpopLayer in-process (proof, the
token from the verifier's cache, the memory replay cache), next to a bearer
request's check (the cached token alone).

Then through a real `mcp-warden serve` over HTTP (as bench/server.py: the
stub upstream, raw JSON-RPC `tools/call web_search` POSTs, keep-alive, 1 and
16 concurrent clients): calls/s and p50 of requests with a DPoP-bound token
and a fresh proof each, against the same server's bearer calls in the same
rounds (alternating order). MCP_REVOCATION_URL is SQLite, as bench/server.py,
so the replay cache is too: one SQLite write per DPoP call. The proofs of a
round are signed just before it, so the figures are the server's cost;
signing is the client's (one Ed25519 signature per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Figure
from bench.load import AUDIENCE as LAB_AUDIENCE
from bench.load import BODY, lab, percentile, server_process
from mcp_warden.demo.harness import free_port
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
HTTP_ROUNDS = 3
HTTP_CALLS = ((1, 100), (16, 20))  # (clients, calls per client per round): a few seconds
HTTP_AUDIENCE = LAB_AUDIENCE
JSONRPC = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-11-25",
}


def run() -> list[Figure]:
    return [*_in_process(), *_over_http()]


def _in_process() -> list[Figure]:
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


async def _client(url: str, requests: list[dict[str, str]], latencies: list[float]) -> None:
    async with httpx.AsyncClient(headers=JSONRPC, trust_env=False, timeout=30.0) as http:
        for headers in requests:
            start = time.perf_counter()
            response = await http.post(url, content=BODY, headers=headers)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200 or b'"isError":false' not in response.content:
                raise RuntimeError(f"bad answer {response.status_code}: {response.text[:200]}")


async def _round(url: str, per_client: list[list[dict[str, str]]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(url, requests, latencies) for requests in per_client))
    return len(latencies) / (time.perf_counter() - start), latencies


async def _measure(
    url: str, bearer: str, bound: str, key: Ed25519PrivateKey
) -> dict[tuple[str, int], tuple[float, float]]:
    """(variant, clients) -> (median calls/s, p50 ms)."""

    def requests(variant: str, clients: int, calls: int) -> list[list[dict[str, str]]]:
        if variant == "bearer":
            return [[{"Authorization": f"Bearer {bearer}"}] * calls for _ in range(clients)]
        now = time.time()
        return [
            [
                {
                    "Authorization": f"DPoP {bound}",
                    "DPoP": sign_proof(
                        key, method="POST", url=HTTP_AUDIENCE, now=now, access_token=bound
                    ),
                }
                for _ in range(calls)
            ]
            for _ in range(clients)
        ]

    variants = ("bearer", "DPoP")
    for variant in variants:  # warm up: connections, the verifier's cache, the stub
        await _round(url, requests(variant, 4, 25))
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for clients, calls in HTTP_CALLS:
        rates: dict[str, list[float]] = {name: [] for name in variants}
        pooled: dict[str, list[float]] = {name: [] for name in variants}
        for index in range(HTTP_ROUNDS):
            for variant in variants[index % 2 :] + variants[: index % 2]:
                rate, latencies = await _round(url, requests(variant, clients, calls))
                rates[variant].append(rate)
                pooled[variant] += latencies
        for variant in variants:
            p50 = percentile(pooled[variant], 0.5) * 1000
            results[variant, clients] = (statistics.median(rates[variant]), p50)
    return results


def _over_http() -> list[Figure]:
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bench = stack.enter_context(lab(Path(tmp)))
        root = bench.root
        argv = [sys.executable, "-m", "mcp_warden", "serve", "--port", str(free_port())]
        url, _pid = stack.enter_context(server_process(argv, bench.env, root / "serve.log"))
        tokens = {
            name: mint(
                root / "keys",
                issuer="mcp-warden",
                sub=f"bench-{name}",
                tools=["web_search"],
                ttl=3600,
                audience=HTTP_AUDIENCE,
                extra_claims=claims,
            )
            for name, claims in (
                ("bearer", None),
                ("dpop", {"cnf": {"jkt": thumbprint(public_jwk(key))}}),
            )
        }
        results = asyncio.run(_measure(url, tokens["bearer"], tokens["dpop"], key))
    figures = []
    for clients, _ in HTTP_CALLS:
        who = f"{clients} client{'s' if clients > 1 else ''}"
        dpop, bearer = results["DPoP", clients], results["bearer", clients]
        for index, (what, unit) in enumerate((("calls/s", "calls/s"), ("p50", "ms"))):
            figures.append(
                Figure(
                    SECTION,
                    f"serve over HTTP, DPoP (a proof per call, SQLite replay cache), {what}, {who}",
                    dpop[index],
                    unit,
                    f"bearer, same server, {who}",
                    bearer[index],
                )
            )
    return figures
