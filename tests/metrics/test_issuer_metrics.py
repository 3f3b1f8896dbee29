"""`mcp-warden issuer serve` with MCP_METRICS_PORT: tokens issued and refused, counted per
authenticated client and reason; a client id nobody authenticated is never a label.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.issuer.lab import issuer_lab
from tests.support.prometheus import check_metrics, metrics_url, scrape

pytestmark = pytest.mark.slow

GRANT = {"grant_type": "client_credentials"}
ISSUED = 3
WRONG_SECRET = 2


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_a_scrape_counts_tokens_issued_and_refused(tmp_path: Path) -> None:
    with issuer_lab(tmp_path) as lab:
        alice = lab.add_client("alice", ["web_search"])
        assert alice.secret is not None
        claimed = "mcpw_nobody_" + "x" * 20  # no such client
        with lab.issuer(env={"MCP_METRICS_PORT": "0"}) as issuer:
            url = metrics_url(issuer.log)
            tokens = []
            for _ in range(ISSUED):
                answer = issuer.post_token(GRANT, auth=alice.basic)
                assert answer.status_code == 200, answer.text
                tokens.append(answer.json()["access_token"])
            for _ in range(WRONG_SECRET):
                refused = issuer.post_token(GRANT, auth=basic(alice.client_id, "mcpws_wrong"))
                assert refused.status_code == 401
            assert issuer.post_token(GRANT, auth=basic(claimed, "mcpws_x")).status_code == 401
            scoped = issuer.post_token({**GRANT, "scope": "extract_url"}, auth=alice.basic)
            assert scoped.json()["error"] == "invalid_scope"
            revoked = issuer.post_revoke({"token": tokens[0]}, auth=alice.basic)
            assert revoked.status_code == 200

            metrics = scrape(url)
            check_metrics(metrics.text)
            requests = "mcp_warden_issuer_requests_total"

            def count(endpoint: str, outcome: str, client: str, reason: str) -> float | None:
                return metrics.value(
                    requests, endpoint=endpoint, outcome=outcome, client=client, reason=reason
                )

            assert count("token", "issued", alice.client_id, "none") == ISSUED
            assert count("token", "refused", "unauthenticated", "invalid_secret") == WRONG_SECRET
            assert count("token", "refused", "unauthenticated", "unknown_client") == 1
            assert count("token", "refused", alice.client_id, "invalid_scope") == 1
            assert count("revoke", "revoked", alice.client_id, "none") == 1
            assert len(metrics.series(requests)) == 5
            assert not metrics.series("mcp_warden_tool_calls_total")
            # The issuer follows no revocation view: no series, rather than a stale-looking 0.
            assert not metrics.series("mcp_warden_revocation_synced_timestamp_seconds")
            for secret in (claimed, alice.secret, "mcpws_wrong", *tokens):
                assert secret not in metrics.text
            public = httpx.get(
                issuer.url + "/metrics", verify=lab.pki.client_context(), trust_env=False
            )
            assert public.status_code == 404
