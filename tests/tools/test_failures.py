"""Every upstream failure mode of the real stub becomes its clear error, and the client
keeps working afterwards; retries are counted by the stub itself. The stub runs
in-process except for the socket-level cases (timeouts, a refused connection)."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from mcp_warden.demo.harness import Stub, free_port
from mcp_warden.demo.stub import ECHOES
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from tests.support.stub import key_runs
from tests.tools.cases import FAILURES
from tests.tools.fakes import Sleeps

pytestmark = pytest.mark.anyio

QUERY = "confidential merger plans"


@pytest.mark.parametrize("case", FAILURES, ids=[repr(f[0]) for f in FAILURES])
async def test_failure_mode_maps_to_its_error_then_recovers(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    api_key: str,
    case: tuple[dict[str, Any], str, str, int],
) -> None:
    mode, reason, message, calls = case
    stub.mode(**mode, times=calls)
    async with make_client() as client:
        with pytest.raises(ScavioError) as failed:
            await client.search(QUERY)
        assert failed.value.reason == reason
        assert message in str(failed.value)
        assert "\n" not in str(failed.value)
        assert api_key not in str(failed.value)
        assert QUERY not in str(failed.value)
        assert stub.calls() == calls
        # the mode is used up: the same client serves the next call normally
        found = await client.search(QUERY)
    assert len(found["results"]) == 5
    assert stub.calls() == calls + 1


async def test_429_twice_then_ok_succeeds_on_the_third_call(
    make_client: Callable[..., ScavioClient], stub: Stub, sleeps: Sleeps
) -> None:
    stub.mode(status=429, times=2)
    async with make_client() as client:
        found = await client.search(QUERY)
    assert len(found["results"]) == 5
    assert stub.statuses() == [429, 429, 200]
    # no hint from the upstream: full-jitter windows of 0.5 s then 1 s
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= 0.5
    assert 0 <= sleeps.waits[1] <= 1.0


@pytest.mark.parametrize(
    "case",
    [
        ({"retry_after": 3}, 3.0, 3.0),
        ({"retry_after": 2.5}, 2.5, 2.5),
        ({"rate_limit_reset": 2}, 2.0, 2.0),
        ({"rate_limit_reset": "epoch+4"}, 2.5, 4.0),
        ({"retry_after": "date+5"}, 3.5, 5.0),
    ],
)
async def test_rate_limit_waits_what_the_upstream_asks(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    sleeps: Sleeps,
    case: tuple[dict[str, Any], float, float],
) -> None:
    hint, low, high = dict(case[0]), case[1], case[2]
    now = time.time()
    for name, value in hint.items():
        if value == "epoch+4":
            hint[name] = int(now) + 4
        elif value == "date+5":
            hint[name] = email.utils.formatdate(int(now) + 5, usegmt=True)
    stub.mode(status=429, times=1, **hint)
    async with make_client() as client:
        await client.search(QUERY)
    assert stub.statuses() == [429, 200]
    assert len(sleeps.waits) == 1
    assert low <= sleeps.waits[0] <= high


async def test_503_honours_retry_after_too(
    make_client: Callable[..., ScavioClient], stub: Stub, sleeps: Sleeps
) -> None:
    stub.mode(status=503, times=2, retry_after=1)
    async with make_client() as client:
        await client.usage()
    assert stub.statuses() == [503, 503, 200]
    assert sleeps.waits == [1.0, 1.0]


async def test_a_wait_longer_than_8_s_fails_at_once(
    make_client: Callable[..., ScavioClient], stub: Stub, sleeps: Sleeps
) -> None:
    stub.mode(status=429, times=1, retry_after=30)
    async with make_client() as client:
        with pytest.raises(ScavioError, match=r"HTTP 429\); it asks to wait 30 s, try again then"):
            await client.search(QUERY)
    assert stub.calls() == 1
    assert sleeps.waits == []


@pytest.mark.slow
async def test_real_retry_after_of_one_second(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    """The one test that really sleeps: a 1 s Retry-After is waited for, not skipped."""
    stub.mode(status=429, times=1, retry_after=1)
    async with make_client(sleep=asyncio.sleep) as client:
        started = time.monotonic()
        found = await client.search(QUERY)
        elapsed = time.monotonic() - started
    assert len(found["results"]) == 5
    assert stub.statuses() == [429, 200]
    assert 1.0 <= elapsed < 3.0


@pytest.mark.slow
async def test_timeouts_are_retried_then_reported(
    make_live_client: Callable[..., ScavioClient], live_stub: Stub
) -> None:
    live_stub.mode(delay=1.0, times=3)
    async with make_live_client(timeout=0.2) as client:
        with pytest.raises(ScavioError) as failed:
            await client.search(QUERY)
        assert failed.value.reason == "timeout"
        assert str(failed.value) == (
            "Scavio did not answer within 0.2 s after 3 attempts; try again later"
        )
        assert live_stub.calls() == 3
        assert len((await client.search(QUERY))["results"]) == 5


@pytest.mark.slow
async def test_one_timeout_then_an_answer_succeeds(
    make_live_client: Callable[..., ScavioClient], live_stub: Stub
) -> None:
    live_stub.mode(delay=1.0, times=1)
    async with make_live_client(timeout=0.2) as client:
        found = await client.search(QUERY)
    assert len(found["results"]) == 5
    assert live_stub.calls() == 2


async def test_unreachable_upstream(sleeps: Sleeps, api_key: str) -> None:
    port = free_port()  # nothing listens there
    client = ScavioClient(
        base_url=f"http://127.0.0.1:{port}",
        profile="scavio-v2",
        load_key=lambda: api_key,
        sleep=sleeps,
    )
    async with client:
        with pytest.raises(ScavioError) as failed:
            await client.search(QUERY)
    assert failed.value.reason == "unreachable"
    assert str(failed.value) == (
        f"could not reach Scavio at http://127.0.0.1:{port} (ConnectError) after 3 attempts; "
        "try again later"
    )
    assert len(sleeps.waits) == 2


ECHO_STATUSES: list[dict[str, Any]] = [
    {"status": 400, "times": 1},
    {"status": 401, "times": 1},
    {"status": 402, "times": 1},
    {"status": 403, "times": 1},
    {"status": 404, "times": 1},
    {"status": 429, "times": 3, "retry_after": 0},
    {"status": 503, "times": 3, "retry_after": 0},
]


ECHO_CASES = [(mode, echo) for mode in ECHO_STATUSES for echo in ECHOES]


@pytest.mark.parametrize("case", ECHO_CASES, ids=[f"{m['status']}-{e}" for m, e in ECHO_CASES])
async def test_an_echoed_key_never_reaches_the_client_and_is_masked_in_the_server_log(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    case: tuple[dict[str, Any], str],
) -> None:
    mode, echo = case
    caplog.set_level(logging.WARNING, logger="mcp_warden")
    stub.mode(**mode, echo_key=echo, error=f"upstream says no to '{QUERY.upper()}'")
    async with make_client() as client:
        with pytest.raises(ScavioError) as failed:
            await client.search(QUERY)
    client_text = str(failed.value)
    assert key_runs(client_text, api_key) == []
    assert "upstream says no" not in client_text  # a fixed reason, never the upstream's text
    assert f"HTTP {mode['status']}" in client_text
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("mcp_warden")]
    assert len(logged) == 1, logged  # one line per failed call, also after retries
    assert f"Scavio answered HTTP {mode['status']} to POST /api/v2/google" in logged[0]
    assert "upstream says no to '[redacted]' (key sent: " in logged[0]
    assert "[redacted]" in logged[0].partition("key sent: ")[2]
    assert key_runs(logged[0], api_key) == []
    assert "\n" not in logged[0]


async def test_a_short_piece_of_the_key_is_not_a_run_and_may_be_logged(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pieces under 8 characters say too little to be masked; 8 and more always are."""
    caplog.set_level(logging.WARNING, logger="mcp_warden")
    seven, eight = api_key[10:17], api_key[20:28].swapcase()
    stub.mode(status=400, times=1, error=f"near {seven} and {eight}")
    async with make_client() as client:
        with pytest.raises(ScavioError):
            await client.search(QUERY)
    assert caplog.records[-1].getMessage().endswith(f"near {seven} and [redacted]")


async def test_the_logged_upstream_reason_is_cut_short(
    make_client: Callable[..., ScavioClient], stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_warden")
    stub.mode(status=400, times=1, error="x" * 100_000)
    async with make_client() as client:
        with pytest.raises(ScavioError) as failed:
            await client.extract("https://example.org/")
    assert "xxx" not in str(failed.value)
    logged = caplog.records[-1].getMessage()
    assert logged.endswith("x...")
    assert len(logged) < 300
