"""An issuer and two DPoP-only `serve` replicas on one Redis behind HAProxy, for the DPoP clients.

with dpop_stack(root) as stack:      # `issuer serve` (TLS, the test CA), Redis, 2 stubs, 2 replicas
    client = stack.lab.add_client("name", ["web_search"], require_dpop=True)
    ...                              # a client gets a bound token and calls both replicas
    stack.refuses_stolen(client, token)   # the token without its key: refused everywhere

The replicas run with MCP_REQUIRE_DPOP=1, MCP_TOKEN_ISSUER / MCP_JWKS naming
the issuer, and `AUDIENCE` (the load balancer's URL) as the audience the
issuer puts in its tokens; each has its own stub and its own audit log.
tests/replicas/test_dpop_python_client.py (the `mcp` Python client with our
`httpx.Auth`) and test_dpop_ts_mcp.py (the TypeScript SDK 2.x client with
its own DPoP) share it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from mcp_warden.demo.harness import jsonrpc_headers, tools_call
from tests.issuer.lab import IssuerLab, Registered, RunningIssuer, issuer_lab, no_secret_in
from tests.support.replicas import AUDIENCE, SEARCH, Cluster, Replica, cluster
from tests.support.server import audit_lines


@dataclass
class DPoPStack:
    lab: IssuerLab
    issuer: RunningIssuer
    cluster: Cluster

    @property
    def replicas(self) -> list[Replica]:
        return self.cluster.replicas

    def audit_log(self, replica: Replica) -> Path:
        return self.cluster.servers / f"audit-{replica.index}.jsonl"

    def stub_calls(self) -> list[int]:
        """How many calls each replica's stub has seen so far."""
        return [replica.stub.calls() for replica in self.replicas]

    def tool_outcomes(self, replica: Replica, client: Registered) -> list[tuple[str, str]]:
        """(tool, outcome) of every tool call `replica` audited for `client`."""
        return [
            (line["tool"], line["outcome"])
            for line in audit_lines(self.audit_log(replica))
            if line.get("sub") == client.client_id and line.get("tool")
        ]

    def refuses_stolen(self, client: Registered, token: str) -> None:
        """The token without its key (as Bearer, or as DPoP with no proof) is refused by every
        replica, no stub sees a call from it, and no audit log holds the token or the secret."""
        before = self.stub_calls()
        haproxy = self.cluster.haproxy
        for replica in self.replicas:
            for scheme in ("Bearer", "DPoP"):
                with haproxy.only([replica.index]):
                    refused = stolen(haproxy.url, {"Authorization": f"{scheme} {token}"})
                assert refused.status_code == 401, (replica.index, scheme, refused.text)
                challenge = refused.headers["www-authenticate"]
                assert challenge.startswith('DPoP error="invalid_dpop_proof"'), challenge
                assert token not in refused.text + challenge
        assert self.stub_calls() == before
        logs = "".join(self.audit_log(replica).read_text() for replica in self.replicas)
        logs += self.issuer.audit_log.read_text()
        assert no_secret_in(logs, client.secret, token)


def stolen(url: str, headers: dict[str, str]) -> httpx.Response:
    """One tools/call POST with exactly these auth headers (as someone with only the token)."""
    sent = {**jsonrpc_headers(None), **headers}
    with httpx.Client(timeout=30, trust_env=False) as http:
        return http.post(url, content=json.dumps(tools_call("web_search", SEARCH)), headers=sent)


@contextlib.contextmanager
def dpop_stack(root: Path) -> Iterator[DPoPStack]:
    """Start the issuer and the replicas under `root` (see the module docstring)."""
    (root / "cluster").mkdir()
    with (
        cluster(root / "cluster", replicas=2, start=False) as replicas,
        issuer_lab(root / "issuer") as lab,
    ):
        lab.env["MCP_TOKEN_AUDIENCE"] = AUDIENCE  # the one resource the issuer serves
        lab.env["MCP_REVOCATION_URL"] = replicas.env["MCP_REVOCATION_URL"]
        replicas.env.update(
            MCP_TOKEN_ISSUER=lab.issuer_url,
            MCP_JWKS=lab.issuer_url + "/jwks.json",
            SSL_CERT_FILE=str(lab.pki.ca_file),
            MCP_REQUIRE_DPOP="1",
        )
        with lab.issuer() as issuer:
            replicas.start_all()
            yield DPoPStack(lab, issuer, replicas)
