"""A Scavio-compatible upstream on 127.0.0.1, for the tests and the demo.

It is a real HTTP server (Starlette on uvicorn, both already installed with
the `mcp` SDK: keep-alive, concurrent slow requests and a clean SIGTERM come
for free) that speaks both profiles of `server.tools.scavio`:

    POST /api/v2/google    Authorization: Bearer KEY   {"query", "gl"?, "hl"?}
    POST /api/v1/search    x-api-key: KEY              {"query", "num_results"}
    POST /api/v1/extract   either header               {"url", "format"?}
    GET  /api/v1/usage     either header

and answers deterministic fake results (ten organic results per Google page,
`num_results` results for the tutorial search). It checks the key it is sent
against the accepted keys: a file (`--keys-file`, mode 0600, one key per
line, re-read when it changes, so a rotation test can swap keys) and/or the
environment variable `SCAVIO_STUB_KEYS` (keys separated by commas or
whitespace); never the command line, where `ps` would show them.

Control endpoints for tests (no auth; the stub only ever binds 127.0.0.1):

    GET  /_stub/stats   {"calls": {endpoint: n}, "total": n, "requests": [...]}
                        each request: {"endpoint", "key": sha256 prefix or null, "status",
                        "connection": the client's port, one per keep-alive connection}
    POST /_stub/mode    the next API calls fail or slow down, e.g.
                        {"status": 429, "times": 2, "retry_after": 1}
                        {"delay": 2.5}  {"bad_json": true}  {"bad_shape": true}
                        fields: status (400 401 402 403 404 429 500 502 503 504),
                        times (default: until reset), retry_after (seconds or an
                        HTTP date), rate_limit_reset, delay (seconds, <= 60),
                        bad_json, bad_shape, error (the error text to send),
                        echo_key (put the key it was sent in that text, as a
                        careless upstream does: exact, upper, partial, split)
    POST /_stub/reset   clear the mode, the counters and the request log

Run it with `python -m mcp_warden.demo.stub --port 0 --keys-file F`: the
first line on stdout is `listening on 127.0.0.1:PORT` (port 0 picks a free
one); `demo.harness.stub_process` does that and hands back a control object.
`StubServer` runs the same app in a thread of the calling process.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import socket
import stat
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_warden.demo.harness import HOST

KEYS_ENV = "SCAVIO_STUB_KEYS"
GOOGLE_PAGE = 10
FAIL_STATUSES = frozenset({400, 401, 402, 403, 404, 429, 500, 502, 503, 504})
_LOG_MAX = 1000
_MODE_FIELDS = frozenset(
    {
        "status",
        "times",
        "retry_after",
        "rate_limit_reset",
        "delay",
        "bad_json",
        "bad_shape",
        "error",
        "echo_key",
    }
)
ECHOES = ("exact", "upper", "partial", "split")


class BadInput(Exception):
    """A request body or mode the stub answers with 400 and this message."""


class StubConfigError(Exception):
    """The stub cannot start as asked (no keys, a readable keys file, ...)."""


def key_id(key: str) -> str:
    """What the stub records for a key: a SHA-256 prefix, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class AcceptedKeys:
    """Fixed keys plus a keys file re-read whenever it changes."""

    def __init__(self, keys: Iterable[str] = (), keys_file: Path | None = None) -> None:
        self._fixed = frozenset(k for k in keys if k)
        self._file = keys_file
        self._seen: tuple[int, ...] | None = None
        self._from_file: frozenset[str] = frozenset()
        if keys_file is not None:
            self._reload(strict=True)
        if not self._fixed and not self._from_file:
            raise StubConfigError(f"no accepted keys: give --keys-file or set {KEYS_ENV}")

    def __contains__(self, key: object) -> bool:
        self._reload(strict=False)
        return key in self._fixed or key in self._from_file

    def _reload(self, *, strict: bool) -> None:
        if self._file is None:
            return
        try:
            info = self._file.stat()
        except OSError:
            if strict:
                raise StubConfigError(f"cannot read the keys file {self._file}") from None
            return  # keep the last good set while the file is being replaced
        version = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)
        if version == self._seen:
            return
        if stat.S_IMODE(info.st_mode) & 0o077:
            if strict:
                raise StubConfigError(f"the keys file {self._file} must be mode 0600")
            self._from_file = frozenset()
        else:
            lines = self._file.read_text(encoding="utf-8").splitlines()
            self._from_file = frozenset(line.strip() for line in lines if line.strip())
        self._seen = version


@dataclass
class Mode:
    """The failure the next API calls get; `times` None means until reset."""

    status: int | None = None
    times: int | None = None
    retry_after: float | str | None = None
    rate_limit_reset: float | None = None
    delay: float = 0.0
    bad_json: bool = False
    bad_shape: bool = False
    error: str | None = None
    echo_key: str | None = None

    @classmethod
    def parse(cls, data: object) -> Mode:
        if not isinstance(data, dict) or not data:
            raise BadInput("the mode must be a non-empty JSON object")
        unknown = set(data) - _MODE_FIELDS
        if unknown:
            raise BadInput(f"unknown mode fields: {', '.join(sorted(unknown))}")
        mode = cls(
            status=_optional(data, "status", int),
            times=_optional(data, "times", int),
            retry_after=_optional(data, "retry_after", (int, float, str)),
            rate_limit_reset=_optional(data, "rate_limit_reset", (int, float)),
            delay=float(_optional(data, "delay", (int, float)) or 0.0),
            bad_json=bool(_optional(data, "bad_json", bool)),
            bad_shape=bool(_optional(data, "bad_shape", bool)),
            error=_optional(data, "error", str),
            echo_key=_optional(data, "echo_key", str),
        )
        if mode.status is not None and mode.status not in FAIL_STATUSES:
            raise BadInput(f"status must be one of {sorted(FAIL_STATUSES)}")
        if mode.echo_key is not None and (mode.echo_key not in ECHOES or mode.status is None):
            raise BadInput(f"echo_key must be one of {', '.join(ECHOES)}, with a status")
        if mode.times is not None and mode.times < 1:
            raise BadInput("times must be at least 1")
        if not 0.0 <= mode.delay <= 60.0:
            raise BadInput("delay must be 0-60 seconds")
        if sum((mode.status is not None, mode.bad_json, mode.bad_shape)) > 1:
            raise BadInput("choose one of status, bad_json, bad_shape")
        if mode.status is None and not (mode.bad_json or mode.bad_shape or mode.delay):
            raise BadInput("the mode changes nothing: give status, delay, bad_json or bad_shape")
        return mode

    def failure(self, presented: str | None) -> Response | None:
        """The response that replaces the normal answer, if any (a delay alone has none)."""
        if self.status is not None:
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = _header_number(self.retry_after)
            if self.rate_limit_reset is not None:
                headers["X-RateLimit-Reset"] = _header_number(self.rate_limit_reset)
            message = self.error or f"stub failure mode: HTTP {self.status}"
            if self.echo_key is not None:
                message += f" (key sent: {echo(presented or '', self.echo_key)})"
            return JSONResponse({"error": message}, self.status, headers=headers)
        if self.bad_json:
            return Response(b'{"organic_results": [', media_type="application/json")
        if self.bad_shape:
            return JSONResponse({"unexpected": True})
        return None


def echo(key: str, how: str) -> str:
    """The key as a careless upstream might quote it back."""
    if how == "upper":
        return key.upper()
    if how == "partial":  # its middle third, as in "key ...abcd1234efgh... is invalid"
        third = len(key) // 3
        return f"...{key[third : 2 * third]}..."
    if how == "split":  # cut in two across a line, the second half upper-cased
        half = len(key) // 2
        return f"{key[:half]}\n{key[half:].upper()}"
    return key


class StubState:
    """Counters, the request log and the current mode (one event loop: no locks)."""

    def __init__(self, keys: AcceptedKeys) -> None:
        self.keys = keys
        self.mode: Mode | None = None
        self.calls: Counter[str] = Counter()
        self.requests: deque[dict[str, Any]] = deque(maxlen=_LOG_MAX)
        self.served = 0

    def take_mode(self) -> Mode | None:
        mode = self.mode
        if mode is not None and mode.times is not None:
            mode.times -= 1
            if mode.times == 0:
                self.mode = None
        return mode

    def reset(self) -> None:
        self.mode = None
        self.calls.clear()
        self.requests.clear()
        self.served = 0

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "total": sum(self.calls.values()),
            "requests": list(self.requests),
        }


def build_app(keys: AcceptedKeys) -> Starlette:
    """The stub as an ASGI app."""
    state = StubState(keys)

    async def api(request: Request) -> Response:
        endpoint = request.url.path
        presented = _presented_key(request, endpoint)
        record: dict[str, Any] = {
            "endpoint": endpoint,
            "key": key_id(presented) if presented else None,
            "connection": request.client.port if request.client else None,
        }
        state.calls[endpoint] += 1
        state.requests.append(record)
        response = await _answer(request, endpoint, presented, state)
        record["status"] = response.status_code
        return response

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def set_mode(request: Request) -> Response:
        try:
            state.mode = Mode.parse(await _json(request))
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/api/v2/google", api, methods=["POST"]),
            Route("/api/v1/search", api, methods=["POST"]),
            Route("/api/v1/extract", api, methods=["POST"]),
            Route("/api/v1/usage", api, methods=["GET"]),
            Route("/_stub/stats", stats, methods=["GET"]),
            Route("/_stub/mode", set_mode, methods=["POST"]),
            Route("/_stub/reset", reset, methods=["POST"]),
        ]
    )


async def _answer(
    request: Request, endpoint: str, presented: str | None, state: StubState
) -> Response:
    mode = state.take_mode()
    if mode is not None:
        if mode.delay:
            await asyncio.sleep(mode.delay)
        failure = mode.failure(presented)
        if failure is not None:
            return failure
    if presented is None or presented not in state.keys:
        return JSONResponse({"error": "Invalid API key"}, 401)
    if endpoint == "/api/v1/usage":
        return JSONResponse(_usage(state.served))
    try:
        body = await _json(request)
        payload = _result(endpoint, body)
    except BadInput as exc:
        return JSONResponse({"error": str(exc)}, 400)
    state.served += 1
    return JSONResponse(payload)


def _presented_key(request: Request, endpoint: str) -> str | None:
    """The key in the header this endpoint's profile uses (either one for shared endpoints)."""
    bearer = request.headers.get("authorization", "")
    from_bearer = bearer[7:] if bearer.lower().startswith("bearer ") else None
    from_header = request.headers.get("x-api-key")
    if endpoint == "/api/v2/google":
        return from_bearer
    if endpoint == "/api/v1/search":
        return from_header
    return from_bearer or from_header


def _result(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    if endpoint == "/api/v1/extract":
        return _extract(body)
    query = body.get("query")
    if not isinstance(query, str) or not 1 <= len(query) <= 500:
        raise BadInput("query must be 1-500 characters")
    tag = hashlib.sha256(query.encode()).hexdigest()[:8]
    if endpoint == "/api/v2/google":
        hits = [_hit(tag, i, GOOGLE_PAGE, "link") for i in range(1, GOOGLE_PAGE + 1)]
        params = {"engine": "google", "gl": body.get("gl"), "hl": body.get("hl")}
        return {"search_parameters": params, "organic_results": hits}
    count = body.get("num_results", 5)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 20:
        raise BadInput("num_results must be 1-20")
    return {"results": [_hit(tag, i, count, "url") for i in range(1, count + 1)]}


def _hit(tag: str, index: int, count: int, url_field: str) -> dict[str, Any]:
    return {
        "position": index,
        "title": f"Stub result {index} for query {tag}",
        url_field: f"https://example.com/stub/{tag}/{index}",
        "snippet": f"Offline result {index} of {count} from the mcp-warden stub upstream.",
    }


def _extract(body: dict[str, Any]) -> dict[str, Any]:
    url, fmt = body.get("url"), body.get("format", "markdown")
    if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url):
        raise BadInput("url must be an http(s) URL")
    pages = {
        "markdown": "# Stub page\n\nOffline content from the mcp-warden stub upstream.",
        "text": "Stub page\n\nOffline content from the mcp-warden stub upstream.",
        "html": "<html><body><h1>Stub page</h1><p>Offline content.</p></body></html>",
    }
    if fmt not in pages:
        raise BadInput("format must be markdown, text or html")
    content = pages[fmt]
    return {
        "url": url,
        "format": fmt,
        "mode": "normal",
        "content": content,
        "content_length": len(content),
    }


def _usage(served: int) -> dict[str, Any]:
    return {
        "plan": "stub",
        "credit_balance": max(1000 - served, 0),
        "purchased_credits": 0,
        "searches_used": served,
        "period_start": "2026-01-01T00:00:00Z",
        "auto_recharge": {"enabled": False},
    }


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadInput("the body must be JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the body must be a JSON object")
    return data


def _optional(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise BadInput(f"{name} has the wrong type")
    if not isinstance(value, kind):
        raise BadInput(f"{name} has the wrong type")
    return value


def _header_number(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _bind(port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; with
    # proto 0 every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)  # connections queue from here on: printing the port is race-free
    return sock


def _server(app: Starlette) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    return uvicorn.Server(config)


class StubServer:
    """The stub in a background thread of this process (for unit tests)."""

    def __init__(
        self, *, keys: Iterable[str] = (), keys_file: Path | None = None, port: int = 0
    ) -> None:
        self._app = build_app(AcceptedKeys(keys, keys_file))
        self._sock = _bind(port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self._server = _server(self._app)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def env_keys(environ: Mapping[str, str]) -> list[str]:
    """Keys from SCAVIO_STUB_KEYS (commas or whitespace between them)."""
    return [k for k in re.split(r"[,\s]+", environ.get(KEYS_ENV, "")) if k]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mcp_warden.demo.stub",
        description="Offline Scavio-compatible upstream on 127.0.0.1 (tests and the demo).",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--keys-file", type=Path, help="accepted API keys, one a line, mode 0600")
    args = parser.parse_args(argv)
    try:
        keys = AcceptedKeys(env_keys(os.environ), args.keys_file)
        sock = _bind(args.port)
    except (StubConfigError, OSError) as exc:
        print(f"mcp_warden.demo.stub: {exc}", file=sys.stderr)
        return 2
    print(f"listening on {HOST}:{sock.getsockname()[1]}", flush=True)
    _server(build_app(keys)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
