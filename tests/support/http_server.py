"""A small real http/https server on 127.0.0.1 that records every request path (JWKS tests)."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.tls import TestPki


class RecordingServer(ThreadingHTTPServer):
    """A real server on 127.0.0.1 (https when given a PKI) that records every request path.

    It answers `status` with `body`, or a redirect for 301/302/307.
    """

    def __init__(self, pki: TestPki | None = None, *, status: int = 200) -> None:
        self.requests: list[str] = []
        self.body = b'{"keys": []}'
        self.status = status
        self.pki = pki
        super().__init__(("127.0.0.1", 0), _Handler)
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


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, RecordingServer)
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
def serving(server: RecordingServer) -> Iterator[RecordingServer]:
    """Serve in a thread (polling for shutdown every 50 ms); always shut down and close."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
