"""What one token holder can tie up on a real `serve` (issue 8, item 10).

No event stream left open by GET, no body read that is announced too big, no
body read for a tool the `Mcp-Method`/`Mcp-Name` headers already show is not
granted, and at most MCP_MAX_CONCURRENT_REQUESTS requests in progress. Raw
sockets send exactly the bytes meant (headers without their body); every
read is bounded, so "no answer" fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator, Mapping

import httpx
import pytest

from mcp_warden.demo.harness import LEGACY_VERSION, post, tools_call
from tests.support.server import Deployment, Served, deployment

LIMIT = 3  # MCP_MAX_CONCURRENT_REQUESTS of this module's server
MAX_BODY = 4 * 1024 * 1024  # the SDK's request body limit
PROMPT = 5.0  # seconds: "at once", with room for a loaded machine
SEARCH = {"query": "limits"}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_stub")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("limits")
    with deployment(root, MCP_MAX_CONCURRENT_REQUESTS=str(LIMIT)) as lab:
        yield lab


Answer = tuple[int, dict[str, str], bytes]


def send_head(
    lab: Deployment, token: str, *, length: int, headers: Mapping[str, str] | None = None
) -> socket.socket:
    """A connection that has sent a POST /mcp's headers announcing `length` bytes, and no body."""
    lines = [
        "POST /mcp HTTP/1.1",
        f"Host: 127.0.0.1:{lab.port}",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        f"MCP-Protocol-Version: {LEGACY_VERSION}",
        f"Content-Length: {length}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    sock = socket.create_connection(("127.0.0.1", lab.port), timeout=PROMPT)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_answer(sock: socket.socket) -> Answer:
    """The response on `sock`, read within PROMPT seconds (fails the test otherwise)."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        while len(body) < int(headers.get("content-length", "0")):
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of the answer"
            body += chunk
    except TimeoutError:
        pytest.fail(f"no answer within {PROMPT} s (the server is waiting for the body)")
    return int(status_line.split()[1]), headers, body


def test_get_and_delete_on_mcp_are_405_at_once_with_allow_post(
    lab: Deployment, server: Served
) -> None:
    token = lab.mint(["web_search"])
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "text/event-stream, application/json",
        "MCP-Protocol-Version": LEGACY_VERSION,
    }
    with httpx.Client(timeout=PROMPT, trust_env=False) as http:
        for method in ("GET", "DELETE"):
            response = http.request(method, server.url, headers=headers)
            assert response.status_code == 405, (method, response.text)
            assert response.headers["allow"] == "POST"
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]["message"].startswith("this server answers POST only")
        without_token = http.get(server.url, headers={"Accept": "text/event-stream"})
        assert without_token.status_code == 405
    assert post(server.url, tools_call("web_search", SEARCH), token).status_code == 200


def test_announced_oversize_body_is_413_before_any_byte_of_it_is_sent(
    lab: Deployment, server: Served
) -> None:
    token = lab.mint(["web_search"])
    with contextlib.closing(send_head(lab, token, length=MAX_BODY + 1)) as sock:
        status, headers, body = read_answer(sock)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert (
        json.loads(body)["error"]["message"] == f"the request body is larger than {MAX_BODY} bytes"
    )
    assert lab.stub.calls() == 0


@pytest.mark.parametrize("name", ["extract_url", "=?base64?ZXh0cmFjdF91cmw=?="])
def test_ungranted_tool_in_mcp_name_header_is_403_before_the_body_is_read(
    lab: Deployment, server: Served, name: str
) -> None:
    token = lab.mint(["web_search"])
    routing = {"Mcp-Method": "tools/call", "Mcp-Name": name}
    with contextlib.closing(send_head(lab, token, length=200, headers=routing)) as sock:
        status, headers, body = read_answer(sock)
    assert status == 403
    assert headers["www-authenticate"].startswith(
        'Bearer error="insufficient_scope", scope="extract_url", '
    )
    assert json.loads(body)["error"]["code"] == -32602
    assert lab.stub.calls() == 0


def test_granted_tool_in_mcp_name_header_still_has_its_body_checked(
    lab: Deployment, server: Served
) -> None:
    token = lab.mint(["web_search"])
    granted = {"Mcp-Method": "tools/call", "Mcp-Name": "web_search"}
    ok = post(server.url, tools_call("web_search", SEARCH), token, headers=granted)
    assert ok.status_code == 200, ok.text
    lying = post(server.url, tools_call("extract_url"), token, headers=granted)
    assert lying.status_code == 403
    assert lab.stub.calls("/api/v1/extract") == 0


def test_requests_beyond_the_concurrency_limit_are_503_and_the_server_recovers(
    lab: Deployment, server: Served
) -> None:
    token = lab.mint(["web_search"])
    health = f"http://127.0.0.1:{lab.port}/healthz"
    held = [send_head(lab, token, length=100) for _ in range(LIMIT)]  # in progress: body awaited
    try:
        deadline = time.monotonic() + PROMPT
        while True:  # the held requests reach the app in their own time: poll, bounded
            refused = post(server.url, tools_call("web_search", SEARCH), token)
            if refused.status_code == 503:
                break
            assert time.monotonic() < deadline, f"still {refused.status_code} with {LIMIT} held"
            time.sleep(0.05)
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["jsonrpc"] == "2.0"
        assert refused.json()["error"]["message"].startswith("this server is handling as many")
        assert httpx.get(health, trust_env=False, timeout=PROMPT).status_code == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + PROMPT
    while (answer := post(server.url, tools_call("web_search", SEARCH), token)).status_code != 200:
        assert time.monotonic() < deadline, f"still {answer.status_code} after the release"
        time.sleep(0.05)
    assert answer.json()["result"]["isError"] is False
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


def test_max_concurrent_requests_must_be_a_positive_whole_number(lab: Deployment) -> None:
    done = lab.cli("serve", "--port", "0", env={"MCP_MAX_CONCURRENT_REQUESTS": "0"})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mcp-warden: MCP_MAX_CONCURRENT_REQUESTS=0 is below the minimum of 1"
    )
