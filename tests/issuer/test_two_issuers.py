"""Two `issuer serve` processes on one registry (SQLite, and Redis), changed by `clients` commands.

A rotated secret and a removed client are refused by both within a second
of the command returning; an assertion used at one is refused at the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.issuer.lab import ASSERTION_TYPE, IssuerLab, Registered, RunningIssuer, issuer_lab
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow  # real issuer / serve / CLI processes

GRANT = {"grant_type": "client_credentials"}
WITHIN_SECONDS = 1.0


@pytest.fixture(params=["sqlite", "redis"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IssuerLab]:
    env = {}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        env["MCP_CLIENTS_URL"] = server.url
    with issuer_lab(tmp_path, **env) as built:
        yield built


def refused_by_both_within(
    issuers: tuple[RunningIssuer, RunningIssuer], auth: str, since: float
) -> list[float]:
    """Seconds after `since` at which each issuer first refuses `auth` (polled, bounded)."""
    seen: list[float] = []
    for issuer in issuers:
        while True:
            reply = issuer.post_token(GRANT, auth=auth)
            if reply.status_code == 401:
                assert reply.json()["error"] == "invalid_client"
                seen.append(time.monotonic() - since)
                break
            assert reply.status_code == 200, reply.text
            assert time.monotonic() - since < 5 * WITHIN_SECONDS, "still accepted after 5 s"
            time.sleep(0.02)
    return seen


def test_rotated_secret_and_removed_client_are_refused_by_both(lab: IssuerLab) -> None:
    client = lab.add_client("svc", ["web_search"])
    with lab.issuer() as one, lab.issuer() as two:
        for issuer in (one, two):
            assert issuer.post_token(GRANT, auth=client.basic).status_code == 200

        done = lab.cli("clients", "rotate-secret", client.client_id)
        assert done.returncode == 0, done.stderr
        since = time.monotonic()
        new = Registered(client.client_id, json.loads(done.stdout)["client_secret"])
        assert new.secret != client.secret
        delays = refused_by_both_within((one, two), client.basic, since)
        assert max(delays) < WITHIN_SECONDS, delays
        for issuer in (one, two):
            assert issuer.post_token(GRANT, auth=new.basic).status_code == 200
            assert issuer.audit()[-2]["reason"] == "invalid_secret"

        done = lab.cli("clients", "remove", client.client_id)
        assert done.returncode == 0, done.stderr
        since = time.monotonic()
        delays = refused_by_both_within((one, two), new.basic, since)
        assert max(delays) < WITHIN_SECONDS, delays
        for issuer in (one, two):
            assert issuer.audit()[-1]["reason"] == "unknown_client"


def test_an_assertion_used_at_one_issuer_is_refused_at_the_other(lab: IssuerLab) -> None:
    client = lab.add_client("keyed", ["web_search"], key=True)
    with lab.issuer() as one, lab.issuer() as two:
        assertion = client.assertion(lab.issuer_url)  # both serve the one issuer URL
        form = {**GRANT, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        assert one.post_token(form).status_code == 200
        replay = two.post_token(form)
        assert replay.status_code == 400, replay.text
        assert replay.json()["error"] == "invalid_client"
        assert two.audit()[-1]["reason"] == "assertion_replayed"
        # And the other way round, with a fresh one.
        fresh = {**form, "client_assertion": client.assertion(lab.issuer_url)}
        assert two.post_token(fresh).status_code == 200
        assert one.post_token(fresh).status_code == 400
        assert one.audit()[-1]["reason"] == "assertion_replayed"
