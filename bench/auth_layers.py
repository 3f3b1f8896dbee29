"""What authentication costs per request, in one process, without network or upstream.

The HTTP figures (bench/server.py) put the server, the stub and the load
generator on the same cores, so a difference of a few hundred microseconds
between two server processes is within their noise. Here the same ASGI apps
are driven in-process (httpx's ASGITransport) with `tools/list`, which never
calls the upstream, and three apps take turns:

- auth off: the SDK server and tools, no verifier (the baseline);
- SDK auth only: the SDK's bearer middleware with our TokenVerifier adapter
  (what any SDK server with a verifier pays);
- mcp-warden: the product's app (`Warden.http_app`): SDK auth, the 403 scope layer,
  the ToolGuard middleware and the 401 rewording layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bench.common import Figure
from mcp_warden.config import Settings
from mcp_warden.server.app import Runtime, new_server
from mcp_warden.server.auth import TokenVerifierAdapter, auth_settings
from mcp_warden.server.http import streamable_http
from mcp_warden.server.tools import add_tools, all_tools
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir

SECTION = "auth layers in one process: tools/list through the ASGI app (no network, no upstream)"
AUDIENCE = "http://127.0.0.1:8000/mcp"
ROUNDS = 12
CALLS = 200  # per round and app
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'


def _settings(root: Path) -> Settings:
    return Settings.from_env(
        {
            "MCP_ENCRYPTION_KEY": secrets.token_hex(32),
            "MCP_CREDENTIALS_FILE": str(root / "creds.enc"),
            "MCP_KEYS_DIR": str(root / "keys"),
            "MCP_REVOCATION_URL": "memory://",
            "MCP_AUDIT_LOG": str(root / "audit.jsonl"),
            "MCP_TOKEN_AUDIENCE": AUDIENCE,
            "SCAVIO_BASE_URL": "http://127.0.0.1:9",  # never called: tools/list only
        }
    )


def unprotected(runtime: Runtime, **options: Any) -> Starlette:
    """The product's server and tools with `options` only: no ToolGuard, no guarded tools."""
    server = new_server(**options)
    add_tools(server, all_tools(runtime.scavio))
    return streamable_http(server, runtime.warden.settings, "127.0.0.1")


def _starlette(app: ASGIApp) -> Starlette:
    inner: object = app
    while not isinstance(inner, Starlette) and hasattr(inner, "app"):  # our outer layers
        inner = inner.app
    if not isinstance(inner, Starlette):
        raise TypeError(f"unexpected app {type(inner).__name__}")
    return inner


async def _measure(apps: dict[str, ASGIApp], token: str) -> dict[str, float]:
    """Median microseconds per request of each app, the apps taking turns."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        for name, app in apps.items():
            inner = _starlette(app)
            await stack.enter_async_context(inner.router.lifespan_context(inner))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://127.0.0.1:8000",
                    headers=headers,
                )
            )
        for name, client in clients.items():  # warm up, and check every answer once
            response = await client.post("/mcp", content=BODY)
            if response.status_code != 200 or b'"web_search"' not in response.content:
                raise RuntimeError(f"{name}: bad answer {response.status_code}")
        runs: dict[str, list[float]] = {name: [] for name in apps}
        for index in range(ROUNDS):
            names = list(apps)
            for name in names[index % len(names) :] + names[: index % len(names)]:
                start = time.perf_counter()
                for _ in range(CALLS):
                    await clients[name].post("/mcp", content=BODY)
                runs[name].append((time.perf_counter() - start) / CALLS * 1e6)
    return {name: statistics.median(values) for name, values in runs.items()}


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = _settings(root)
        KeyDir(settings.keys_dir).new()
        runtime = Runtime.open(settings)
        try:
            sdk_auth: dict[str, Any] = {
                "token_verifier": TokenVerifierAdapter(runtime.warden.verifier, offload=False),
                "auth": auth_settings(settings),
            }
            apps: dict[str, ASGIApp] = {
                "off": unprotected(runtime),
                "sdk": unprotected(runtime, **sdk_auth),
                "ours": runtime.warden.http_app(runtime.server(), host="127.0.0.1"),
            }
            token = mint(
                settings.keys_dir,
                issuer=settings.token_issuer,
                sub="bench",
                tools=["web_search"],
                ttl=3600,
                audience=AUDIENCE,
            )
            us = asyncio.run(_measure(apps, token))
        finally:
            asyncio.run(runtime.aclose())
    off = "auth off (SDK server, no verifier)"
    return [
        Figure(SECTION, "mcp-warden app (all layers)", us["ours"], "us", off, us["off"]),
        Figure(SECTION, "SDK bearer auth + our verifier only", us["sdk"], "us", off, us["off"]),
        Figure(
            SECTION,
            "mcp-warden layers beyond the SDK's auth",
            us["ours"],
            "us",
            "SDK bearer auth + our verifier only",
            us["sdk"],
        ),
    ]
