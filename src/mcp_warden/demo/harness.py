"""Real processes on 127.0.0.1 and an MCP client to drive them: the demo's and the tests'.

`mcp-warden demo` runs the stub upstream and `mcp-warden serve` as real
processes and calls them with the official MCP client, as the tests do; this
is the one copy of that plumbing (the installed demo cannot import tests,
so tests/support imports it from here). Every wait is bounded and whatever
`background` starts is stopped, also after an error or Ctrl-C.

with stub_process(tmp, keys=[key]) as stub:       # python -m mcp_warden.demo.stub --port 0
    stub.url                                      # http://127.0.0.1:PORT, for SCAVIO_BASE_URL
    stub.mode(status=429, times=2)                # the next calls fail (see demo.stub)
    stub.calls("/api/v2/google"), stub.keys_used()
    stub.set_keys(new)                            # rotate the accepted keys (atomic, 0600)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from mcp_warden.credentials.files import write_atomic
from mcp_warden.errors import WardenError

if TYPE_CHECKING:
    from mcp import Client
    from mcp.shared.exceptions import MCPError
    from mcp_types import CallToolResult

HOST = "127.0.0.1"
LEGACY_VERSION = "2025-11-25"
"""A handshake-era protocol version: the server takes plain stateless JSON-RPC POSTs."""
STUB_READY = f"listening on {HOST}:"


class NotReady(WardenError):
    """A process stopped, or stayed silent, before it was ready."""


# -- processes ----------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cli_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """This environment without MCP_/SCAVIO_ settings (none leak in), plus `base` and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "SCAVIO_"))}
    env.update(base or {})
    env.update(extra)
    return env


def run_process(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    input: str | bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a process to its end, output captured as text; never raises on a non-zero exit."""
    data = input.decode() if isinstance(input, bytes) else input
    return subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        input=data if data is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    input: str | bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `mcp-warden ARGS` as a real process; never raises on a non-zero exit."""
    argv = [sys.executable, "-m", "mcp_warden", *args]
    return run_process(argv, env, input=input, cwd=cwd, timeout=timeout)


@contextlib.contextmanager
def background(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process in its own session (output to `log`), wait for `port`, always stop it."""
    with contextlib.ExitStack() as stack:
        out: IO[bytes] | int = subprocess.DEVNULL
        if log is not None:
            out = stack.enter_context(log.open("wb"))
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by us, as a group, even after Ctrl-C
        )
        stack.callback(stop, proc)
        if port is not None:
            wait_for_port(port, timeout, proc)
        yield proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once something accepts on 127.0.0.1:port; NotReady if `proc` ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise NotReady(f"the process exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return
        time.sleep(0.05)
    raise NotReady(f"nothing listened on {HOST}:{port} within {timeout:.0f} s")


def wait_for_line(
    log: Path, proc: subprocess.Popen[bytes], prefix: str, timeout: float = 20.0
) -> str:
    """The first line of `log` starting with `prefix`, waiting for it (bounded).

    NotReady, naming the log's last line, if the process ends or time runs out first.
    """
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines:
            if line.startswith(prefix):
                return line
        last = lines[-1] if lines else "no output"
        if proc.poll() is not None:
            raise NotReady(
                f"the process exited with code {proc.returncode} "
                f"before printing {prefix.strip()!r}: {last}"
            )
        if time.monotonic() > deadline:
            raise NotReady(f"no {prefix.strip()!r} within {timeout:.0f} s: {last}")
        time.sleep(0.05)


# -- the stub upstream --------------------------------------------------------


def write_keys(path: Path, keys: Sequence[str]) -> None:
    """Replace the stub's keys file atomically, mode 0600 (it re-reads it on change)."""
    write_atomic(path, "".join(f"{key}\n" for key in keys).encode())


class Stub:
    """Control and inspection of a running stub over its `/_stub` endpoints."""

    def __init__(self, url: str, keys_file: Path, pid: int | None = None) -> None:
        self.url = url
        self.keys_file = keys_file
        self.pid = pid  # the stub's process, when `stub_process` started it (the bench's CPU)
        self._http = httpx.Client(base_url=url, timeout=10.0, trust_env=False)

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_stub/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def calls(self, endpoint: str | None = None) -> int:
        """How many API calls reached `endpoint` (all endpoints: None)."""
        stats = self.stats()
        return int(stats["total"] if endpoint is None else stats["calls"].get(endpoint, 0))

    def keys_used(self) -> list[str | None]:
        """The key of each request in arrival order, as `demo.stub.key_id` (None: no key)."""
        return [request["key"] for request in self.stats()["requests"]]

    def statuses(self) -> list[int]:
        return [request["status"] for request in self.stats()["requests"]]

    def mode(self, **fields: Any) -> None:
        """Make the next API calls fail or slow down (the fields of `demo.stub.Mode`)."""
        response = self._http.post("/_stub/mode", json=fields)
        if response.status_code != 200:
            raise ValueError(f"the stub refused the mode {fields}: {response.text}")

    def reset(self) -> None:
        self._http.post("/_stub/reset").raise_for_status()

    def set_keys(self, *keys: str) -> None:
        write_keys(self.keys_file, keys)

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def stub_process(
    directory: Path, keys: Sequence[str], *, via_env: bool = False, timeout: float = 20.0
) -> Iterator[Stub]:
    """Start `python -m mcp_warden.demo.stub --port 0` and stop it afterwards.

    The accepted keys go in a 0600 keys file in `directory`, or with `via_env`
    in SCAVIO_STUB_KEYS; never on the command line, where `ps` shows them.
    """
    keys_file = directory / "stub-keys"
    argv = [sys.executable, "-m", "mcp_warden.demo.stub", "--port", "0"]
    if via_env:
        env = cli_env(SCAVIO_STUB_KEYS=",".join(keys))
    else:
        write_keys(keys_file, keys)
        env = cli_env()
        argv += ["--keys-file", str(keys_file)]
    log = directory / "stub.log"
    with background(argv, env=env, log=log) as proc:
        line = wait_for_line(log, proc, STUB_READY, timeout)
        stub = Stub("http://" + line.removeprefix("listening on "), keys_file, proc.pid)
        try:
            yield stub
        finally:
            stub.close()


# -- MCP clients --------------------------------------------------------------


@contextlib.asynccontextmanager
async def mcp_http(url: str, token: str | None) -> AsyncIterator[Client]:
    """The official Python MCP client over streamable HTTP, with a bearer header."""
    # The SDK loads on first use: `mcp-warden demo --help` does not pay for it.
    import httpx2  # noqa: PLC0415
    from mcp import Client  # noqa: PLC0415
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30.0) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def call_http(
    url: str, token: str | None, tool: str, arguments: dict[str, Any]
) -> CallToolResult:
    """One tools/call; a JSON-RPC error is raised as MCPError (not inside a task group's group)."""
    try:
        async with mcp_http(url, token) as client:
            return await client.call_tool(tool, arguments)
    except BaseException as exc:
        found = mcp_error(exc)
        if found is None:
            raise
        raise found from None


def mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError in `exc` or in the exception groups around it."""
    from mcp.shared.exceptions import MCPError  # noqa: PLC0415

    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = mcp_error(inner)
            if found is not None:
                return found
    return None


def jsonrpc_headers(token: str | None) -> dict[str, str]:
    """The headers of a raw JSON-RPC POST to /mcp (stateless, no initialize needed)."""
    return {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": LEGACY_VERSION,
        **({"Authorization": f"Bearer {token}"} if token is not None else {}),
    }


def post(
    url: str,
    message: object,
    token: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One raw JSON-RPC POST, as a client without an MCP SDK sends it."""
    sent = {**jsonrpc_headers(token), **(headers or {})}
    with httpx.Client(timeout=30.0, trust_env=False) as http:
        return http.post(url, content=json.dumps(message).encode(), headers=sent)


def tools_call(name: str, arguments: dict[str, Any] | None = None, id: int = 1) -> dict[str, Any]:
    """A tools/call JSON-RPC request."""
    params = {"name": name, "arguments": arguments or {}}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}
