"""The issuer's token endpoint: what a token fetched over OAuth costs beside minting one.

`mcp-warden issuer serve` runs as a real process (plain HTTP on loopback, as
behind a TLS-terminating proxy: the figure is the endpoint's, not the TLS
handshake's), with the SQLite client registry and its audit log. Two clients
are registered with `mcp-warden clients add`: one with a secret
(client_secret_basic) and one with an Ed25519 key (private_key_jwt: each
request carries a fresh assertion, signed before the clock starts, whose
jti the issuer records in its replay cache).

The load generator is lean: httpx with keep-alive, one connection per
client, `grant_type=client_credentials` with `scope=web_search` and the
`resource`, every answer checked (200 and a token). 1 and 16 concurrent
clients; the two methods alternate over several rounds so drift hits them
alike. Latency is per request at the client; calls/s is the median over
rounds.

The floor is the issuer's own signing step in-process: `mint` with the key
held in memory and the same claims (RFC 9068 `client_id`, `scope`), one call
at a time, which is all a token endpoint must do at the least.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Figure, per_call_us
from mcp_warden.demo.harness import background, cli_env, free_port, run_cli, wait_for_line
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.jwks import public_jwk
from mcp_warden.tokens.keys import KeyDir

SECTION = "issuer: token endpoint, client_credentials (plain HTTP on loopback, keep-alive)"
ROUNDS = 3
CALLS_1 = 200  # per round, one client
CALLS_16 = 25  # per client per round, 16 clients
METHODS = ("client_secret_basic", "private_key_jwt")
BANNER = "mcp-warden: issuer serving on "
AUDIENCE = "http://127.0.0.1:8000/mcp"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Clients:
    """The two registered clients and how each authenticates one request."""

    def __init__(self, issuer: str, basic: tuple[str, str], keyed: tuple[str, Ed25519PrivateKey]):
        self.issuer = issuer
        client_id, secret = basic
        raw = f"{client_id}:{secret}".encode()
        self.basic = "Basic " + base64.b64encode(raw).decode()
        self.keyed_id, self._key = keyed

    def forms(self, method: str, count: int) -> list[tuple[dict[str, str], dict[str, str]]]:
        """(form, headers) for `count` requests, assertions signed now (before any timing)."""
        form = {"grant_type": "client_credentials", "scope": "web_search", "resource": AUDIENCE}
        if method == "client_secret_basic":
            return [(form, {"Authorization": self.basic})] * count
        return [({**form, **self._assertion()}, {}) for _ in range(count)]

    def _assertion(self) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": self.keyed_id,
            "sub": self.keyed_id,
            "aud": self.issuer,
            "iat": now,
            "exp": now + 240,
            "jti": str(uuid.uuid4()),
        }
        assertion = jwt.encode(claims, self._key, algorithm="EdDSA")
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


async def _client(
    url: str, requests: list[tuple[dict[str, str], dict[str, str]]], latencies: list[float]
) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=30.0) as http:
        for form, headers in requests:
            start = time.perf_counter()
            response = await http.post(url, data=form, headers=headers)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200 or "access_token" not in response.json():
                raise RuntimeError(f"bad answer {response.status_code}: {response.text[:200]}")


async def _round(
    url: str, clients: Clients, method: str, count: int, calls: int
) -> tuple[float, list[float]]:
    """calls/s and the per-request latencies of `count` concurrent clients."""
    work = [clients.forms(method, calls) for _ in range(count)]
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(url, requests, latencies) for requests in work))
    return len(latencies) / (time.perf_counter() - start), latencies


async def _measure(url: str, clients: Clients) -> dict[tuple[str, int], tuple[float, float]]:
    """(method, clients) -> (calls/s, p50 ms)."""
    for method in METHODS:  # warm up: connections, registry, key
        await _round(url, clients, method, 4, 10)
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for count, calls in ((1, CALLS_1), (16, CALLS_16)):
        rates: dict[str, list[float]] = {m: [] for m in METHODS}
        pooled: dict[str, list[float]] = {m: [] for m in METHODS}
        for index in range(ROUNDS):
            order = METHODS if index % 2 == 0 else tuple(reversed(METHODS))
            for method in order:
                rate, latencies = await _round(url, clients, method, count, calls)
                rates[method].append(rate)
                pooled[method] += latencies
        for method in METHODS:
            p50 = percentile(pooled[method], 0.5) * 1000
            results[method, count] = (statistics.median(rates[method]), p50)
    return results


def _floor_us(keys: Path, issuer: str) -> float:
    """Microseconds of the issuer's signing step in-process (the key held in memory)."""
    signing_key = KeyDir(keys).signing_key()

    def one() -> str:
        return mint(
            keys,
            issuer=issuer,
            sub="mcpw_bench",
            tools=["web_search"],
            ttl=600,
            audience=AUDIENCE,
            extra_claims={"client_id": "mcpw_bench", "scope": "web_search"},
            signing_key=signing_key,
        )

    return per_call_us(one, number=2000)


def _register(env: dict[str, str], root: Path) -> tuple[tuple[str, str], tuple[str, Any]]:
    """`clients add` twice: a secret client and an Ed25519 private_key_jwt client."""
    done = run_cli(["clients", "add", "bench-secret", "--tools", "web_search"], env)
    if done.returncode != 0:
        raise RuntimeError(f"clients add failed: {done.stderr}")
    printed = json.loads(done.stdout)
    basic = (printed["client_id"], printed["client_secret"])
    key = Ed25519PrivateKey.generate()
    jwk_file = root / "bench-key.jwk"
    jwk_file.write_text(json.dumps(public_jwk(key.public_key())), encoding="utf-8")
    args = ["clients", "add", "bench-key", "--tools", "web_search", "--jwk", str(jwk_file)]
    done = run_cli(args, env)
    if done.returncode != 0:
        raise RuntimeError(f"clients add --jwk failed: {done.stderr}")
    return basic, (json.loads(done.stdout)["client_id"], key)


@contextlib.contextmanager
def _issuer(env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    argv = [sys.executable, "-m", "mcp_warden", "issuer", "serve", "--port", str(port)]
    with background(argv, env=env, log=log) as proc:
        wait_for_line(log, proc, BANNER, 60.0)
        yield


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        KeyDir(root / "keys").new()
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = cli_env(
            {
                "MCP_KEYS_DIR": str(root / "keys"),
                "MCP_CLIENTS_URL": f"sqlite:///{root / 'clients.db'}",
                "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
                "MCP_TOKEN_ISSUER": issuer,
                "MCP_TOKEN_AUDIENCE": AUDIENCE,
                "MCP_AUDIT_LOG": str(root / "issuer-audit.jsonl"),
            }
        )
        basic, keyed = _register(env, root)
        clients = Clients(issuer, basic, keyed)
        floor = _floor_us(root / "keys", issuer)
        with _issuer(env, port, root / "issuer.log"):
            results = asyncio.run(_measure(issuer + "/token", clients))
    return _figures(results, floor)


def _figures(results: dict[tuple[str, int], tuple[float, float]], floor_us: float) -> list[Figure]:
    figures = []
    for count in (1, 16):
        who = f"{count} client{'s' if count > 1 else ''}"
        for method in METHODS:
            rate, p50 = results[method, count]
            floor = "in-process mint (the floor)"
            figures.append(
                Figure(SECTION, f"{method}, calls/s, {who}", rate, "calls/s", floor, 1e6 / floor_us)
            )
            figures.append(
                Figure(SECTION, f"{method}, p50, {who}", p50, "ms", floor, floor_us / 1e3)
            )
    return figures
