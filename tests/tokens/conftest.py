"""Fixtures for token tests: a TokenLab and real http/https servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.tls import TestPki, make_pki
from tests.support.tokens import TokenLab


@pytest.fixture
def lab(tmp_path: Path) -> TokenLab:
    return TokenLab(tmp_path / "keys")


class StubServer(ThreadingHTTPServer):
    """A real server on 127.0.0.1 (https when given a PKI) that records every request path.

    It answers `status` with `body`, or a redirect for 301/302/307.
    """

    def __init__(self, pki: TestPki | None = None, *, status: int = 200) -> None:
        self.requests: list[str] = []
        self.body = b'{"keys": []}'
        self.status = status
        self.pki = pki
        super().__init__(("127.0.0.1", 0), _StubHandler)
        if pki is not None:
            self.socket = pki.server_context().wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        scheme = "http" if self.pki is None else "https"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's test CA (and nothing else)."""
        assert self.pki is not None, "a plain http server has no certificate"
        return self.pki.client_context()


class _StubHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, StubServer)
        server.requests.append(self.path)
        if server.status in (301, 302, 307):
            self.send_response(server.status)
            self.send_header("Location", "https://127.0.0.1:1/elsewhere.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = server.body if server.status == 200 else b"no"
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def serving(server: StubServer) -> Iterator[StubServer]:
    """Serve in a thread; always shut down and close."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[StubServer]:
    """Plain http, 404 for everything: the place hostile header URLs point at."""
    with serving(StubServer(status=404)) as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def jwks_server(pki: TestPki) -> Iterator[StubServer]:
    """https with a certificate from the test CA, serving `body` at /jwks.json."""
    with serving(StubServer(pki)) as server:
        yield server
