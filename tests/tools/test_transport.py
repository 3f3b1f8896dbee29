"""The client's own transport (aiohttp under httpx, `scavio.transport`) over real sockets:
TLS verified against the CAs it trusts, and each failure named for what it is (a
connection that fails is never reported as a timeout)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.scavio.transport import upstream_transport
from tests.support.http_server import RecordingServer, serving
from tests.support.tls import make_pki
from tests.tools.fakes import Sleeps

pytestmark = pytest.mark.anyio

USAGE = {"plan": "tls", "credit_balance": 7, "searches_used": 3, "period_start": "2026-01-01"}


def _client(url: str, api_key: str, sleeps: Sleeps, **options: object) -> ScavioClient:
    return ScavioClient(
        base_url=url,
        profile="scavio-v2",
        load_key=lambda: api_key,
        sleep=sleeps,
        **options,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def _answering(reply: bytes, received: list[bytes] | None = None) -> Iterator[str]:
    """A 127.0.0.1 server that reads each request (into `received`), sends `reply` (maybe
    nothing) and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5.0)
                request = conn.recv(65536)
                if received is not None:
                    received.append(request)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5.0)
        listener.close()


async def test_an_https_upstream_signed_by_a_trusted_ca_answers(
    tmp_path: Path, api_key: str, sleeps: Sleeps
) -> None:
    pki = make_pki(tmp_path)
    server = RecordingServer(pki)
    server.body = json.dumps(USAGE).encode()
    with serving(server):
        transport = upstream_transport(verify=pki.client_context())
        async with _client(server.url, api_key, sleeps, transport=transport) as client:
            usage = await client.usage()
            again = await client.usage()
    assert usage == again == USAGE
    assert server.requests == ["/api/v1/usage"] * 2


async def test_a_certificate_the_client_does_not_trust_is_refused_as_unreachable(
    tmp_path: Path, api_key: str, sleeps: Sleeps
) -> None:
    server = RecordingServer(make_pki(tmp_path))  # its CA is not among certifi's
    server.body = json.dumps(USAGE).encode()
    with serving(server):
        async with _client(server.url, api_key, sleeps) as client:
            with pytest.raises(ScavioError) as failed:
                await client.usage()
    assert failed.value.reason == "unreachable"
    assert str(failed.value) == (
        f"could not reach Scavio at {server.url} (ConnectError) after 3 attempts; try again later"
    )
    assert server.requests == []  # no request crossed the failed handshake


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # hangs up without a word
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{",
    ],
    ids=["no answer", "body cut short"],
)
async def test_a_connection_the_upstream_drops_is_unreachable_not_a_timeout(
    api_key: str, sleeps: Sleeps, reply: bytes
) -> None:
    with _answering(reply) as url:
        async with _client(url, api_key, sleeps, timeout=10.0) as client:
            with pytest.raises(ScavioError) as failed:
                await client.usage()
    assert failed.value.reason == "unreachable"
    assert str(failed.value).startswith(f"could not reach Scavio at {url} (")
    assert len(sleeps.waits) == 2  # retried like any transient failure


async def test_a_cookie_the_upstream_sets_is_never_sent_back(api_key: str, sleeps: Sleeps) -> None:
    body = json.dumps(USAGE).encode()
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Set-Cookie: session=upstream-set; Path=/\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    received: list[bytes] = []
    with _answering(reply, received) as url:
        async with _client(url, api_key, sleeps) as client:
            assert await client.usage() == USAGE
            assert await client.usage() == USAGE
    assert len(received) == 2
    assert all(api_key.encode() in request for request in received)  # the key went each time
    assert not any(b"upstream-set" in request for request in received)


async def test_a_redirect_is_not_followed_so_the_key_goes_nowhere_else(
    api_key: str, sleeps: Sleeps
) -> None:
    """aiohttp under httpx follows no redirect either: the key never reaches the `Location`."""
    elsewhere: list[bytes] = []
    with _answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", elsewhere) as target:
        reply = (
            b"HTTP/1.1 302 Found\r\nLocation: " + target.encode() + b"/api/v1/usage\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        received: list[bytes] = []
        with _answering(reply, received) as url:
            async with _client(url, api_key, sleeps) as client:
                with pytest.raises(ScavioError):
                    await client.usage()
    assert len(received) == 1
    assert api_key.encode() in received[0]
    assert elsewhere == []
