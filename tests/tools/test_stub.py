"""The stub upstream itself: how it starts, whom it lets in, what it records."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_warden.demo.harness import background, cli_env, free_port, stub_process, write_keys
from mcp_warden.demo.stub import StubServer, key_id
from tests.support.stub import key_runs, new_api_key


@pytest.fixture(scope="module")
def thread_key() -> str:
    return new_api_key()


@pytest.fixture(scope="module")
def thread_stub(thread_key: str) -> Iterator[StubServer]:
    """One in-process stub for the tests that only talk HTTP to it."""
    with StubServer(keys=[thread_key]) as stub:
        yield stub


@pytest.fixture
def fresh(thread_stub: StubServer) -> StubServer:
    httpx.post(f"{thread_stub.url}/_stub/reset").raise_for_status()
    return thread_stub


def run_stub(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_warden.demo.stub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
def test_refuses_to_start_without_keys() -> None:
    done = run_stub(["--port", "0"], cli_env())
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mcp_warden.demo.stub: no accepted keys: give --keys-file or set SCAVIO_STUB_KEYS"
    )
    assert done.stdout == ""


@pytest.mark.slow
def test_refuses_a_keys_file_others_can_read(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(new_api_key() + "\n")
    keys_file.chmod(0o644)
    done = run_stub(["--port", "0", "--keys-file", str(keys_file)], cli_env())
    assert done.returncode == 2
    assert f"the keys file {keys_file} must be mode 0600" in done.stderr


@pytest.mark.slow
def test_keys_from_the_environment(tmp_path: Path) -> None:
    first, second = new_api_key(), new_api_key()
    with stub_process(tmp_path, [first, second], via_env=True) as stub:
        for key in (first, second, new_api_key()):
            httpx.get(f"{stub.url}/api/v1/usage", headers={"x-api-key": key}, trust_env=False)
        assert stub.statuses() == [200, 200, 401]


def test_records_a_hash_prefix_of_each_key_never_the_key(
    fresh: StubServer, thread_key: str
) -> None:
    key, url = thread_key, fresh.url
    auth = {"Authorization": f"Bearer {key}"}
    ok = httpx.post(f"{url}/api/v2/google", json={"query": "q"}, headers=auth)
    anonymous = httpx.post(f"{url}/api/v2/google", json={"query": "q"})
    stats = httpx.get(f"{url}/_stub/stats")
    assert ok.status_code == 200
    assert len(ok.json()["organic_results"]) == 10
    assert anonymous.status_code == 401
    assert key not in stats.text
    requests = stats.json()["requests"]
    assert [{k: r[k] for k in ("endpoint", "key", "status")} for r in requests] == [
        {"endpoint": "/api/v2/google", "key": key_id(key), "status": 200},
        {"endpoint": "/api/v2/google", "key": None, "status": 401},
    ]
    # two one-off clients: two connections, each named by its client port
    assert requests[0]["connection"] != requests[1]["connection"]
    assert len(key_id(key)) == 12


def test_a_keys_file_made_readable_stops_counting(tmp_path: Path) -> None:
    key = new_api_key()
    keys_file = tmp_path / "keys"
    write_keys(keys_file, [key])
    with StubServer(keys_file=keys_file) as stub:
        auth = {"x-api-key": key}

        def status() -> int:
            return httpx.get(f"{stub.url}/api/v1/usage", headers=auth).status_code

        before = status()
        keys_file.chmod(0o640)
        readable = status()
        keys_file.chmod(0o600)
        after = status()
    assert (before, readable, after) == (200, 401, 200)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ({}, "the mode must be a non-empty JSON object"),
        ({"status": 418}, "status must be one of"),
        ({"status": 500, "times": 0}, "times must be at least 1"),
        ({"status": "500"}, "status has the wrong type"),
        ({"status": 500, "bad_json": True}, "choose one of status, bad_json, bad_shape"),
        ({"delay": 61}, "delay must be 0-60 seconds"),
        ({"times": 2}, "the mode changes nothing"),
        ({"colour": "red"}, "unknown mode fields: colour"),
        ({"bad_json": 1}, "bad_json has the wrong type"),
        ({"status": 400, "echo_key": "rot13"}, "echo_key must be one of"),
        ({"delay": 1, "echo_key": "upper"}, "echo_key must be one of"),
    ],
)
def test_bad_modes_are_refused(fresh: StubServer, mode: dict[str, Any], message: str) -> None:
    answer = httpx.post(f"{fresh.url}/_stub/mode", json=mode)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_bad_requests_get_400_with_a_reason(fresh: StubServer, thread_key: str) -> None:
    with httpx.Client(base_url=fresh.url, headers={"x-api-key": thread_key}) as post:
        answers = [
            post.post("/api/v1/search", json={"query": ""}),
            post.post("/api/v1/search", json={"query": "q", "num_results": 0}),
            post.post("/api/v1/search", content=b"not json"),
            post.post("/api/v1/extract", json={"url": "ftp://x"}),
            post.post("/api/v1/extract", json={"url": "https://x", "format": "pdf"}),
        ]
    assert [a.status_code for a in answers] == [400] * 5
    assert [a.json()["error"] for a in answers] == [
        "query must be 1-500 characters",
        "num_results must be 1-20",
        "the body must be JSON",
        "url must be an http(s) URL",
        "format must be markdown, text or html",
    ]


@pytest.mark.slow
def test_process_on_a_given_port_prints_it_first(tmp_path: Path) -> None:
    """The demo's way: a port chosen beforehand (harness.free_port), keys in a 0600 file."""
    keys_file, log, port = tmp_path / "keys", tmp_path / "stub.log", free_port()
    write_keys(keys_file, [new_api_key()])
    argv = [sys.executable, "-m", "mcp_warden.demo.stub", "--port", str(port)]
    with background([*argv, "--keys-file", str(keys_file)], env=cli_env(), port=port, log=log):
        stats = httpx.get(f"http://127.0.0.1:{port}/_stub/stats", trust_env=False)
    assert stats.json() == {"calls": {}, "total": 0, "requests": []}
    assert log.read_text().splitlines()[0] == f"listening on 127.0.0.1:{port}"


def test_the_tutorial_profile_answers_num_results(fresh: StubServer, thread_key: str) -> None:
    answer = httpx.post(
        f"{fresh.url}/api/v1/search",
        json={"query": "MCP server security 2026", "num_results": 5},
        headers={"x-api-key": thread_key},
    )
    assert f"Results: {len(answer.json().get('results', []))}" == "Results: 5"


@pytest.mark.parametrize(
    ("how", "quoted"),
    [
        ("exact", lambda key: key),
        ("upper", lambda key: key.upper()),
        ("partial", lambda key: key[len(key) // 3 : 2 * (len(key) // 3)]),
        ("split", lambda key: key[: len(key) // 2]),
        ("split", lambda key: key[len(key) // 2 :].upper()),
    ],
)
def test_echo_key_quotes_the_key_it_was_sent(
    fresh: StubServer, thread_key: str, how: str, quoted: Any
) -> None:
    """The careless upstream the tools tests need: its error text holds the key, mangled."""
    httpx.post(f"{fresh.url}/_stub/mode", json={"status": 400, "echo_key": how}).raise_for_status()
    answer = httpx.get(f"{fresh.url}/api/v1/usage", headers={"x-api-key": thread_key})
    error = answer.json()["error"]
    assert answer.status_code == 400
    assert quoted(thread_key) in error
    assert key_runs(error, thread_key)
    if how != "exact":
        assert thread_key not in error  # an exact-match filter would miss it
