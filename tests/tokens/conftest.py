"""Fixtures for token tests: a TokenLab and an HTTP server that records every request."""

from __future__ import annotations

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


class RecordingServer(ThreadingHTTPServer):
    """Answers 404 to everything on 127.0.0.1 and remembers each request path."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Recorder)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, RecordingServer)
        self.server.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class JwksServer(ThreadingHTTPServer):
    """A real https server on 127.0.0.1 serving `body` at /jwks.json (or failing on demand)."""

    def __init__(self, pki: TestPki) -> None:
        self.body = b'{"keys": []}'
        self.status = 200
        self.hits = 0
        self.pki = pki
        super().__init__(("127.0.0.1", 0), _JwksHandler)
        self.socket = pki.server_context().wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/jwks.json"


class _JwksHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, JwksServer)
        self.server.hits += 1
        if self.server.status in (301, 302, 307):
            self.send_response(self.server.status)
            self.send_header("Location", "https://127.0.0.1:1/elsewhere.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.body if self.server.status == 200 else b"down"
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def jwks_server(pki: TestPki) -> Iterator[JwksServer]:
    server = JwksServer(pki)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
