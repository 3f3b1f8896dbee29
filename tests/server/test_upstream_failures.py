"""Each failure of the upstream stub reaches the client as its mapped tool error, and the
real server keeps serving afterwards (one `mcp-warden serve` process, a 1 s upstream timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mcp_warden.demo.harness import call_http
from tests.support.server import Deployment, Served, audit_lines, deployment, run

pytestmark = pytest.mark.slow

SEARCH = {"query": "failure modes"}

# stub mode -> (audit reason, words the client's error text holds)
FAILURES: dict[str, tuple[dict[str, Any], str, str]] = {
    "400": (
        {"status": 400, "error": "bad gl"},
        "invalid_request",
        "refused the request as invalid",
    ),
    "401": ({"status": 401}, "rejected", "run `mcp-warden cred rotate scavio_api_key`"),
    "403": ({"status": 403}, "rejected", "the stored Scavio key was rejected (HTTP 403)"),
    "402": ({"status": 402}, "out_of_credits", "out of credits (HTTP 402)"),
    "429": ({"status": 429, "retry_after": 0}, "rate_limited", "rate limit was reached"),
    "500": ({"status": 500, "retry_after": 0}, "unavailable", "unavailable (HTTP 500)"),
    "503": ({"status": 503, "retry_after": 0}, "unavailable", "unavailable (HTTP 503)"),
    "timeout": ({"delay": 1.5}, "timeout", "did not answer within 1 s"),
    "bad_json": ({"bad_json": True}, "bad_response", "not valid JSON"),
    "bad_shape": ({"bad_shape": True}, "bad_response", "unexpected shape"),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("upstream"), SCAVIO_TIMEOUT_SECONDS="1") as lab:
        yield lab


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_upstream_failure_is_a_clear_tool_error_and_the_server_keeps_serving(
    lab: Deployment, server: Served, failure: str
) -> None:
    mode, reason, words = FAILURES[failure]
    token = lab.mint(["web_search"], sub=f"failure-{failure}")
    lab.stub.reset()
    lab.stub.mode(**mode)
    result = run(lambda: call_http(server.url, token, "web_search", SEARCH))
    assert result.is_error
    text = " ".join(getattr(part, "text", "") for part in result.content)
    assert words in text
    assert lab.api_key not in text
    assert SEARCH["query"] not in text
    lab.stub.reset()
    again = run(lambda: call_http(server.url, token, "web_search", SEARCH))
    assert not again.is_error, again.content
    assert server.proc.poll() is None
    outcomes = [
        (line["outcome"], line.get("reason"))
        for line in audit_lines(lab.audit_log)
        if line["sub"] == f"failure-{failure}"
    ]
    assert outcomes == [("error", reason), ("allowed", None)]


def test_slow_upstream_within_the_timeout_still_answers(lab: Deployment, server: Served) -> None:
    lab.stub.reset()
    lab.stub.mode(delay=0.3)
    result = run(lambda: call_http(server.url, lab.mint(["web_search"]), "web_search", SEARCH))
    assert not result.is_error


def test_invalid_arguments_never_reach_the_upstream(lab: Deployment, server: Served) -> None:
    lab.stub.reset()
    token = lab.mint(["web_search", "extract_url"], sub="bad-arguments")
    long_query = run(lambda: call_http(server.url, token, "web_search", {"query": "q" * 501}))
    bad_url = run(lambda: call_http(server.url, token, "extract_url", {"url": "ftp://x.test/"}))
    assert long_query.is_error
    assert bad_url.is_error
    assert lab.stub.calls() == 0
    reasons = [
        line.get("reason") for line in audit_lines(lab.audit_log) if line["sub"] == "bad-arguments"
    ]
    assert reasons == ["invalid_arguments", "invalid_argument"]
