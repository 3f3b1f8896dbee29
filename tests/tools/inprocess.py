"""The stub upstream in this process: its ASGI app behind `httpx.ASGITransport`.

For the tests that need only HTTP semantics (statuses, headers, bodies, the
key sent): no process, no socket, no port. The socket-level cases (timeouts,
refused connections, connection reuse) keep the real process
(`mcp_warden.demo.harness.stub_process`). It is driven exactly like the real one
(`Stub`: mode, calls, keys_used, set_keys ...); those control requests reach
the same app through starlette's TestClient.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.testclient import TestClient

from mcp_warden.demo.harness import Stub
from mcp_warden.demo.stub import AcceptedKeys, build_app

URL = "http://127.0.0.1"
"""The base URL the client is given; with the in-process transport no socket is opened."""


class InProcessStub(Stub):
    """The stub app of `mcp_warden.demo.stub`, served without a socket."""

    def __init__(self, keys_file: Path) -> None:
        super().__init__(URL, keys_file)
        self._app = build_app(AcceptedKeys(keys_file=keys_file))
        self._http.close()
        # starlette's TestClient is an httpx2.Client: httpx's API, another distribution
        self._http = TestClient(self._app, base_url=URL)  # type: ignore[assignment]

    def transport(self) -> httpx.ASGITransport:
        """A transport for `ScavioClient(transport=...)` that calls the app in-process."""
        return httpx.ASGITransport(app=self._app)
