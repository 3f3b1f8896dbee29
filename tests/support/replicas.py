"""Many `mcp-warden serve` replicas behind real HAProxy, an issuer apart, and a load generator.

with cluster(tmp_path) as lab:          # redis-server, 3 stubs, 3 replicas, haproxy, an issuer
    token = lab.issuer.mint_cli(["web_search"], sub="alice")   # `mcp-warden token mint`
    lab.issuer.cli("token", "revoke", "--jti", jti)           # another process, shared Redis
    lab.issuer.publish()                # copy jwks.json to the replicas' MCP_JWKS (tmp + rename)
    lab.operator("cred", "rotate", "scavio_api_key", input=new_key + "\\n")
    asyncio.run(drive(lab.haproxy, ...))   # load through HAProxy; each Call knows its replica

What runs where, as in docs/deployment.md:

- `issuer/keys`: the issuer's MCP_KEYS_DIR (private keys, 0700). No replica is
  given a path into it: replicas read `servers/jwks.json`, a copy the issuer
  publishes, through MCP_JWKS; their own MCP_KEYS_DIR is `servers/`, which
  holds no private key (`Cluster.check_no_private_keys`).
- `servers/`: the shared credential store and its master key, the rotation
  log, the published JWKS, one audit log per replica.
- One redis-server (`MCP_REVOCATION_URL=redis://127.0.0.1:PORT/0`) shared by
  the replicas and by the CLI processes that revoke.
- One stub upstream per replica, all accepting the same keys: the stub logs
  the key of every request in arrival order, so a stub per replica gives each
  replica's own order of keys (the rotation test needs it).
- `haproxy` with the shipped deploy/haproxy.cfg (tests/support/haproxy.py)
  in front of the replicas: every client call of these tests goes through
  it. A replica counts as started once HAProxy's health checks have it UP.

Tokens name the load balancer's public URL as their audience (`AUDIENCE`, a
name under the reserved .test domain); clients reach HAProxy on a 127.0.0.1
port, and the replicas listen on their own.

The load generator speaks raw JSON-RPC over httpx (one stateless POST per
`tools/call`, keep-alive connections to HAProxy), not the `mcp` client: a
stateless server answers each POST on its own, which is what a load balancer
routes, and a client session would add an `initialize` round trip and its
own overhead to every measured call. Each call carries an X-Request-ID, and
HAProxy's access log says which replica it went to (`routed`). The
functional checks use the official `mcp` client
(`tests.support.server.call_http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import (
    Stub,
    background,
    cli_env,
    free_port,
    jsonrpc_headers,
    run_cli,
    stop,
    stub_process,
    tools_call,
    wait_for_line,
)
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.jws import b64url_decode
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation.redis import PREFIX
from tests.support.credentials import new_master_key
from tests.support.haproxy import HAProxy, Route, haproxy_binary, haproxy_process
from tests.support.redis_server import RedisServer, redis_binary
from tests.support.server import BANNER, CREDENTIAL, ISSUER
from tests.support.stub import new_api_key
from tests.support.waiting import eventually

AUDIENCE = "https://mcp.example.test/mcp"
"""The load balancer's public URL: what tokens name and every replica expects."""
REQUEST_ID = "X-Request-ID"

SEARCH = {"query": "mcp replicas"}
LOAD_SECONDS_ENV = "MCP_WARDEN_LOAD_SECONDS"
PROPAGATION_SECONDS = 1.0
"""What the design promises: a revocation reaches every replica within this."""
JWKS_REFRESH_SECONDS = 1.0
REVOCATION_REFRESH_SECONDS = 0.5


# -- the issuer ---------------------------------------------------------------


@dataclass
class Issuer:
    """The issuer's own directory: signing keys (private), and the CLI run with its settings."""

    root: Path
    published: Path  # where replicas read the JWKS (MCP_JWKS)
    env: dict[str, str]

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`mcp-warden ARGS` as a separate process with the issuer's settings."""
        return run_cli(args, self.env, input=input)

    def mint_cli(self, tools: Sequence[str], *, sub: str, ttl: int = 900) -> str:
        """A token from `mcp-warden token mint` (a real process)."""
        done = self.cli(
            "token", "mint", "--tools", ",".join(tools), "--sub", sub, "--ttl", str(ttl)
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def mint(self, tools: Sequence[str], *, sub: str, ttl: int = 900) -> str:
        """The same token in-process (the issuer's own `mint`), for the many tokens of a load."""
        return mint(self.keys_dir, issuer=ISSUER, sub=sub, tools=tools, ttl=ttl, audience=AUDIENCE)

    def publish(self) -> float:
        """Deploy the issuer's jwks.json to the replicas as an operator would: tmp, then rename.

        Returns the wall-clock time the new file became visible.
        """
        data = (self.keys_dir / "jwks.json").read_bytes()
        tmp = self.published.with_name(self.published.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, self.published)
        return time.time()

    def kids(self) -> list[str]:
        return [info.kid for info in KeyDir(self.keys_dir).live_keys()]


def load_seconds(default: float) -> float:
    """How long a load run lasts: MCP_WARDEN_LOAD_SECONDS, else `default` (short in tests)."""
    raw = os.environ.get(LOAD_SECONDS_ENV)
    if not raw:
        return default
    seconds = float(raw)
    if not 0 < seconds <= 3600:
        raise ValueError(f"{LOAD_SECONDS_ENV}={raw!r}: give seconds between 0 and 3600")
    return seconds


def jti_and_exp(token: str) -> tuple[str, int]:
    """The jti and exp of a token (read, not verified: the token came from our issuer)."""
    claims = json.loads(b64url_decode(token.split(".")[1]))
    return claims["jti"], claims["exp"]


# -- the replicas -------------------------------------------------------------


@dataclass
class Replica:
    """One `mcp-warden serve` process and the stub it calls."""

    index: int
    port: int
    stub: Stub
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def output(self) -> str:
        return "" if self.log is None else self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class Cluster:
    """A running deployment: see the module docstring."""

    root: Path
    redis: RedisServer
    issuer: Issuer
    replicas: list[Replica]
    haproxy: HAProxy
    env: dict[str, str]  # the replicas' settings (and the operator's, for `cred ...`)
    api_key: str
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def servers(self) -> Path:
        return self.root / "servers"

    def running(self) -> list[int]:
        """The pids of the replicas still running: unchanged pids mean no replica restarted."""
        return [r.proc.pid for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def operator(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`mcp-warden ARGS` with the replicas' settings (master key, store, Redis)."""
        return run_cli(args, self.env, input=input)

    def set_upstream_keys(self, *keys: str) -> None:
        """The keys every stub accepts from now on."""
        for replica in self.replicas:
            replica.stub.set_keys(*keys)

    def start(self, replica: Replica, *, timeout: float = 30.0, **env: str) -> None:
        """Start (or restart) `replica` on its port, until HAProxy has it UP; `env` changes
        its settings."""
        self._spawn(replica, env)
        self._ready(replica, timeout)

    def start_all(self, *, timeout: float = 30.0) -> None:
        """Start every replica at once and wait until each serves, UP in HAProxy."""
        for replica in self.replicas:
            self._spawn(replica, {})
        for replica in self.replicas:
            self._ready(replica, timeout)

    def stop(self, replica: Replica) -> None:
        """SIGTERM (graceful drain), then SIGKILL after 5 s."""
        if replica.proc is not None:
            stop(replica.proc)

    def kill(self, replica: Replica) -> None:
        """SIGKILL, as a crashed host: no drain, connections reset."""
        assert replica.proc is not None
        replica.proc.kill()
        replica.proc.wait(5)

    def redis_client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.redis.port, decode_responses=True)

    def last_revocation_time(self) -> float:
        """Wall-clock time of the last revocation written to Redis (its stream entry's id)."""
        with contextlib.closing(self.redis_client()) as client:
            last = client.xrevrange(PREFIX + "events", count=1)
        assert last, "no revocation in Redis"
        entry_id = str(last[0][0])  # "<milliseconds>-<sequence>", by Redis's clock
        return int(entry_id.partition("-")[0]) / 1000

    def revocation_times(self) -> dict[str, float]:
        """Each revoked jti or sub -> wall-clock time of its latest write to Redis (stream id)."""
        with contextlib.closing(self.redis_client()) as client:
            entries: list[tuple[str, dict[str, str]]] = client.xrange(PREFIX + "events")  # type: ignore[assignment]
        return {fields["v"]: int(entry_id.partition("-")[0]) / 1000 for entry_id, fields in entries}

    def check_no_private_keys(self) -> None:
        """No replica's directory or setting leads to a private signing key."""
        assert not list(self.servers.rglob("*.pem")), "a private key sits in the replicas' dir"
        for name, value in self.env.items():
            assert str(self.issuer.root) not in value, f"{name} points into the issuer's directory"

    def _spawn(self, replica: Replica, env: Mapping[str, str]) -> None:
        if replica.proc is not None:
            stop(replica.proc)
        settings = {
            **self.env,
            "SCAVIO_BASE_URL": replica.stub.url,
            "MCP_AUDIT_LOG": str(self.servers / f"audit-{replica.index}.jsonl"),
            **env,
        }
        argv = [sys.executable, "-m", "mcp_warden", "serve", "--port", str(replica.port)]
        replica.log = self.root / f"replica-{replica.index}-{time.monotonic_ns()}.log"
        replica.proc = self._stack.enter_context(
            background(argv, env=settings, cwd=self.servers, log=replica.log)
        )

    def _ready(self, replica: Replica, timeout: float) -> None:
        assert replica.proc is not None
        assert replica.log is not None
        wait_for_line(replica.log, replica.proc, BANNER, timeout)
        self.haproxy.wait_up(replica.index, timeout)


def start_redis(root: Path, *, persistent: bool, name: str = "redis") -> RedisServer:
    """A redis-server on a free port; `persistent`: appendonly yes in its workdir root/name."""
    workdir = root / name
    workdir.mkdir()
    server = RedisServer(redis_binary(), free_port(), workdir, persistent=persistent)
    server.start()
    return server


@contextlib.contextmanager
def cluster(
    root: Path,
    *,
    replicas: int = 3,
    stale_seconds: float = 30.0,
    persistent_redis: bool = False,
    start: bool = True,
) -> Iterator[Cluster]:
    """Start the deployment in `root` (see the module docstring); stop all of it afterwards.

    `replicas`: 2 or 3 (deploy/haproxy.cfg's slots).
    """
    haproxy_binary()  # skip before starting anything when it is missing
    servers, issuer_root = root / "servers", root / "issuer"
    servers.mkdir()
    issuer_root.mkdir()
    master, api_key = new_master_key(), new_api_key()
    KeyDir(issuer_root / "keys").new()
    CredentialStore(servers / "mcp_credentials.enc", parse_key(master)).set(CREDENTIAL, api_key)
    redis_server = start_redis(root, persistent=persistent_redis)
    with contextlib.ExitStack() as stack:
        stack.callback(redis_server.stop)
        stubs = []
        for index in range(replicas):
            directory = root / f"stub-{index}"
            directory.mkdir()
            stubs.append(stack.enter_context(stub_process(directory, [api_key])))
        env = cli_env(
            {
                "MCP_ENCRYPTION_KEY": master,
                "MCP_CREDENTIALS_FILE": str(servers / "mcp_credentials.enc"),
                "MCP_ROTATION_LOG": str(servers / "rotation_log.jsonl"),
                "MCP_KEYS_DIR": str(servers),
                "MCP_JWKS": str(servers / "jwks.json"),
                "MCP_JWKS_REFRESH_SECONDS": str(JWKS_REFRESH_SECONDS),
                "MCP_TOKEN_AUDIENCE": AUDIENCE,
                "MCP_REVOCATION_URL": redis_server.url,
                "MCP_REVOCATION_REFRESH_SECONDS": str(REVOCATION_REFRESH_SECONDS),
                "MCP_REVOCATION_STALE_SECONDS": str(stale_seconds),
                "MCP_ACTOR": "operator@ci",
            }
        )
        issuer_env = cli_env(
            {
                "MCP_KEYS_DIR": str(issuer_root / "keys"),
                "MCP_TOKEN_AUDIENCE": AUDIENCE,
                "MCP_REVOCATION_URL": redis_server.url,
            }
        )
        issuer = Issuer(issuer_root, servers / "jwks.json", issuer_env)
        issuer.publish()
        members = [Replica(i, free_port(), stub) for i, stub in enumerate(stubs)]
        addresses = [f"127.0.0.1:{replica.port}" for replica in members]
        balancer = stack.enter_context(haproxy_process(root / "haproxy", addresses))
        lab = Cluster(root, redis_server, issuer, members, balancer, env, api_key)
        stack.enter_context(lab._stack)
        if start:
            lab.start_all()
        yield lab


# -- the load, through HAProxy -----------------------------------------------


@dataclass(frozen=True)
class Call:
    """One tools/call as the client saw it. Times are wall-clock seconds (time.time())."""

    label: str  # which token the client used
    request_id: str  # its X-Request-ID
    start: float
    end: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    ok: bool  # 200 and a tool result that is not an error
    detail: str  # why not ok: the exception, the 401's error_description, the error message
    route: Route | None = None  # HAProxy's access-log line for it (`routed`)

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def replica(self) -> int | None:
        """The replica HAProxy sent it to last (None until `routed`)."""
        return None if self.route is None else self.route.replica


def outcome(response: httpx.Response) -> tuple[bool, str]:
    """(ok, detail) of a tools/call response."""
    try:
        body: Any = response.json()
    except ValueError:
        return False, f"not JSON: {response.text[:200]!r}"
    if response.status_code == 401:
        return False, str(body.get("error_description", body))
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return False, str(body["error"].get("message"))
    result = body.get("result") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(result, dict):
        return False, f"HTTP {response.status_code}: {response.text[:200]!r}"
    if result.get("isError"):
        return False, f"tool error: {json.dumps(result.get('content'))[:200]}"
    return True, ""


async def send(http: httpx.AsyncClient, label: str, token: str, message: object) -> Call:
    """POST one JSON-RPC message to /mcp with a fresh X-Request-ID; what came back."""
    request_id = uuid.uuid4().hex
    headers = {**jsonrpc_headers(token), REQUEST_ID: request_id}
    start = time.time()
    try:
        response = await http.post("/mcp", content=json.dumps(message).encode(), headers=headers)
    except httpx.HTTPError as exc:
        return Call(label, request_id, start, time.time(), None, False, type(exc).__name__)
    ok, detail = outcome(response)
    return Call(label, request_id, start, time.time(), response.status_code, ok, detail)


def routed(haproxy: HAProxy, calls: Sequence[Call], *, timeout: float = 10.0) -> list[Call]:
    """`calls`, each with HAProxy's access-log line, waiting for those being written.

    A call that got no HTTP answer may have no line: when a replica dies during a
    request that is not the first on its client connection, HAProxy closes that
    connection and logs nothing (its server's `eresp` counter counts it).
    """
    eventually(
        lambda: all(haproxy.route(c.request_id) for c in calls if c.status is not None),
        timeout,
        "HAProxy logged every answered call",
        poll=0.02,
    )
    return [dataclasses.replace(c, route=haproxy.route(c.request_id)) for c in calls]


def http_client(base: str, *, connections: int = 32) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(10.0, connect=1.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


async def drive(
    haproxy: HAProxy,
    clients: Sequence[tuple[str, str]],
    seconds: float,
    *,
    stop: asyncio.Event | None = None,
    pause: float = 0.0,
    max_calls: int = 1_000_000,
) -> list[Call]:
    """Each (label, token) client calls web_search through HAProxy until told to stop.

    Bounded: every client stops after `seconds`, once `stop` is set, or after
    `max_calls` calls. `pause` is each client's think time between calls.
    Returns the calls `routed`.
    """
    calls: list[Call] = []
    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient, label: str, token: str) -> None:
        for n in range(max_calls):
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return
            calls.append(await send(http, label, token, tools_call("web_search", SEARCH, n)))
            if pause:
                await asyncio.sleep(pause)

    async with http_client(haproxy.base, connections=2 * len(clients)) as http:
        await asyncio.gather(*(client(http, label, token) for label, token in clients))
    return await asyncio.to_thread(routed, haproxy, calls)


async def on_every_replica(
    haproxy: HAProxy, token: str, *, refused: bool, timeout: float, interval: float = 0.01
) -> list[Call]:
    """Call through HAProxy until every replica has refused the token (or accepted it).

    Returns, per replica in order, the first such call it answered: with
    round-robin, consecutive calls go to each replica in turn.
    """
    deadline = time.monotonic() + timeout
    decided: dict[int, Call] = {}
    async with http_client(haproxy.base, connections=1) as http:
        while len(decided) < haproxy.replicas:
            sent = await send(http, "probe", token, tools_call("web_search", SEARCH))
            (call,) = await asyncio.to_thread(routed, haproxy, [sent])
            if call.replica is not None and ((call.status == 401) if refused else call.ok):
                decided.setdefault(call.replica, call)
            wanted = "refused" if refused else "accepted"
            assert time.monotonic() < deadline, (
                f"after {timeout} s only replicas {sorted(decided)} {wanted} it; last: {call}"
            )
            await asyncio.sleep(interval)
    return [decided[index] for index in range(haproxy.replicas)]


# -- figures ------------------------------------------------------------------


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (1-99) of at least two values, by linear interpolation."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass(frozen=True)
class LoadFigures:
    """Throughput and latency of the successful calls of one run."""

    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    def line(self, what: str) -> str:
        return (
            f"{what}: {self.calls} calls in {self.seconds:.1f} s = {self.per_second:.0f} calls/s, "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        )


def span(calls: Sequence[Call]) -> float:
    """Seconds from the first call's start to the last call's end."""
    return max(c.end for c in calls) - min(c.start for c in calls)


def figures(calls: Sequence[Call], seconds: float) -> LoadFigures:
    latencies = [c.latency * 1000 for c in calls if c.ok]
    assert latencies, "no successful call to measure"
    return LoadFigures(
        len(latencies), seconds, percentile(latencies, 50), percentile(latencies, 99)
    )
