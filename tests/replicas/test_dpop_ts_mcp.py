"""The TypeScript SDK 2.x client with its own DPoP, through HAProxy and two replicas (real
processes).

`issuer serve` (TLS, the test CA trusted through NODE_EXTRA_CA_CERTS), two
`mcp-warden serve` replicas on one Redis (MCP_TOKEN_ISSUER = the issuer,
MCP_JWKS = its jwks_uri, MCP_REQUIRE_DPOP=1: no unbound token is accepted),
a stub upstream per replica, HAProxy in front (tests/replicas/dpop_stack.py).
The client (`node/dpop_client.mjs`: `@modelcontextprotocol/client` 2.x, a
`ClientCredentialsProvider` whose `dpop()` returns a `DpopSession`,
registered `--require-dpop`) addresses the load balancer's URL (`AUDIENCE`),
which its fetch resolves to HAProxy, and runs two sessions. It starts with
no token: the first 401 leads it to the issuer, it gets a DPoP-bound token
with a proof in its token request, then calls `web_search` in each session
with `Authorization: DPoP` and a fresh proof on every MCP request. HAProxy
sends its requests round-robin, so both replicas answer requests of its
sessions, all accepted (HAProxy's access log); the stubs see both searches.
The same token without the key is refused by both replicas and no stub sees
it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from mcp_warden.demo.harness import cli_env
from tests.issuer.lab import no_secret_in
from tests.replicas.dpop_stack import DPoPStack, dpop_stack
from tests.support.haproxy import Route
from tests.support.procs import run_node
from tests.support.replicas import AUDIENCE, SEARCH
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # real issuer, replicas, Redis, stubs and Node processes


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DPoPStack]:
    with dpop_stack(tmp_path_factory.mktemp("dpop-ts-client")) as running:
        yield running


@pytest.mark.parametrize("alg", [None, "EdDSA"])  # None: the SDK's default, ES256
def test_the_ts_2x_client_calls_web_search_on_both_replicas_with_a_dpop_bound_token(
    stack: DPoPStack, alg: str | None
) -> None:
    client = stack.lab.add_client(f"ts-dpop-{alg or 'default'}", ["web_search"], require_dpop=True)
    assert client.secret is not None
    plan: dict[str, Any] = {
        "issuer": stack.lab.issuer_url,
        "clientId": client.client_id,
        "mcpUrl": AUDIENCE,
        "replicas": [stack.cluster.haproxy.base] * 2,  # two sessions, both through HAProxy
        "calls": [{"name": "web_search", "arguments": SEARCH}],
    }
    if alg is not None:
        plan["alg"] = alg
    env = cli_env(
        {"NODE_EXTRA_CA_CERTS": str(stack.lab.pki.ca_file), "MCP_CLIENT_SECRET": client.secret}
    )
    before = stack.stub_calls()
    issued_before = len(stack.issuer.audit())
    logged_before = len(stack.cluster.haproxy.requests())
    done = run_node("dpop_client.mjs", env=env, input=json.dumps(plan))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out
    assert [(call.get("via"), call.get("isError")) for call in out["calls"]] == [
        (stack.cluster.haproxy.base, False)
    ] * 2, out["calls"]
    assert sum(stack.stub_calls()) == sum(before) + 2  # both searches reached an upstream

    # Both replicas answered requests of its sessions with the one token, all accepted
    # (the first, before it had a token, was the 401 that sent it to the issuer).
    # HAProxy logs a request once it has sent the answer: the last lines may trail the client.
    def posts() -> list[Route]:
        logged = stack.cluster.haproxy.requests()[logged_before:]
        return [r for r in logged if r.request.startswith("POST")]

    eventually(
        lambda: {r.replica for r in posts() if r.status == 200} == {0, 1},
        10,
        "answers with 200 from both replicas in HAProxy's log",
    )
    assert [r.status for r in posts() if r.status not in {200, 202}] == [401], posts()

    # One token, from one token request with a proof: DPoP, bound to the session's key.
    assert out["tokenType"] == "DPoP"
    assert out["alg"] == (alg or "ES256")
    token = out["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": out["jkt"]}
    assert claims["aud"] == AUDIENCE
    # the token request, then initialize, initialized and tools/call on each replica
    assert out["dpopHeaders"] >= 1 + 2 * 3
    issued = [line for line in stack.issuer.audit()[issued_before:] if line["outcome"] == "issued"]
    assert [line["client_id"] for line in issued] == [client.client_id]
    outcomes = [o for replica in stack.replicas for o in stack.tool_outcomes(replica, client)]
    assert outcomes == [("web_search", "allowed")] * 2

    # The same token without the key: refused by both replicas, and no stub sees it.
    stack.refuses_stolen(client, token)
    assert no_secret_in(done.stderr, client.secret, token)
