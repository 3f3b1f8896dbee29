"""Many `mcp-warden serve` replicas behind one load balancer, an issuer apart, and a load generator.

with cluster(tmp_path) as lab:          # redis-server, 3 stubs, 3 replicas, an issuer directory
    token = lab.issuer.mint_cli(["web_search"], sub="alice")   # `mcp-warden token mint`
    lab.issuer.cli("token", "revoke", "--jti", jti)           # another process, shared Redis
    lab.issuer.publish()                # copy jwks.json to the replicas' MCP_JWKS (tmp + rename)
    lab.operator("cred", "rotate", "scavio_api_key", input=new_key + "\\n")
    asyncio.run(...)                    # Balancer + drive(): round-robin load over the replicas

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

Tokens name the load balancer's URL as their audience (`AUDIENCE`, a name
under the reserved .test domain); the replicas listen on their own 127.0.0.1
ports, and `Balancer` stands in for the load balancer in front of them.

The load generator speaks raw JSON-RPC over httpx (one stateless POST per
`tools/call`, keep-alive connections per replica), not the `mcp` client: a
stateless server answers each POST on its own, which is what a load balancer
routes, and a client session would add an `initialize` round trip and its
own overhead to every measured call. The functional checks use the official
`mcp` client (`tests.support.server.call_http`).
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
from tests.support.redis_server import RedisServer, redis_binary
from tests.support.server import BANNER, CREDENTIAL, ISSUER
from tests.support.stub import new_api_key

AUDIENCE = "https://mcp.example.test/mcp"
"""The load balancer's public URL: what tokens name and every replica expects."""

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

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def output(self) -> str:
        return "" if self.log is None else self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class Cluster:
    """A running deployment: see the module docstring."""

    root: Path
    redis: RedisServer
    issuer: Issuer
    replicas: list[Replica]
    env: dict[str, str]  # the replicas' settings (and the operator's, for `cred ...`)
    api_key: str
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def servers(self) -> Path:
        return self.root / "servers"

    @property
    def urls(self) -> list[str]:
        return [replica.base for replica in self.replicas]

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
        """Start (or restart) `replica` on its port; `env` changes its settings."""
        self._spawn(replica, env)
        self._ready(replica, timeout)

    def start_all(self, *, timeout: float = 30.0) -> None:
        """Start every replica at once and wait until each serves."""
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


def start_redis(root: Path, *, persistent: bool) -> RedisServer:
    """A redis-server on a free port; `persistent`: appendonly yes in its workdir."""
    workdir = root / "redis"
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
    """Start the deployment in `root` (see the module docstring); stop all of it afterwards."""
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
        lab = Cluster(
            root,
            redis_server,
            issuer,
            [Replica(i, free_port(), stub) for i, stub in enumerate(stubs)],
            env,
            api_key,
        )
        stack.enter_context(lab._stack)
        if start:
            lab.start_all()
        yield lab


# -- the load balancer and the load -------------------------------------------


@dataclass(frozen=True)
class Call:
    """One tools/call as the client saw it. Times are wall-clock seconds (time.time())."""

    label: str  # which token the client used
    replica: int
    start: float
    end: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    ok: bool  # 200 and a tool result that is not an error
    detail: str  # why not ok: the exception, the 401's error_description, the error message
    panic: bool = False  # routed while no replica was up (the balancer's panic mode)

    @property
    def latency(self) -> float:
        return self.end - self.start


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


async def send(
    http: httpx.AsyncClient, index: int, label: str, token: str, message: object
) -> Call:
    """POST one JSON-RPC message to replica `index`'s /mcp and record what came back."""
    start = time.time()
    try:
        response = await http.post(
            "/mcp", content=json.dumps(message).encode(), headers=jsonrpc_headers(token)
        )
    except httpx.HTTPError as exc:
        return Call(label, index, start, time.time(), None, False, type(exc).__name__)
    ok, detail = outcome(response)
    return Call(label, index, start, time.time(), response.status_code, ok, detail)


def http_client(base: str, *, connections: int = 32) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(10.0, connect=1.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


class Balancer:
    """Round-robin over the replicas a health check finds up, as a real load balancer does.

    Passive check: a call that gets no HTTP answer (connection refused or
    reset) ejects its replica at once. Active check: every `interval` seconds
    GET /healthz on each replica; 200 puts it (back) in rotation, and
    `unhealthy_after` failed checks in a row take it out (like a real
    balancer's unhealthy threshold: one slow probe on a busy CI machine is
    not an outage). With no replica up it routes over all of them (as
    Envoy's panic mode does), so clients get the replicas' own answer.
    HTTP is stateless here: no stickiness, any replica takes any call.
    """

    def __init__(
        self, bases: Sequence[str], *, interval: float = 0.25, unhealthy_after: int = 2
    ) -> None:
        self._bases = list(bases)
        self._interval = interval
        self._unhealthy_after = unhealthy_after
        self._failed_checks = [0] * len(self._bases)
        self._clients = [http_client(base) for base in self._bases]
        self.up = [True] * len(self._bases)
        self.events: list[tuple[float, int, str]] = []  # (time, replica, "out: why" / "in")
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Balancer:
        await self.check()
        self._task = asyncio.create_task(self._health_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in self._clients:
            await client.aclose()

    def pick(self) -> tuple[int, bool]:
        """The next replica in rotation, and whether none was up (panic: all are tried)."""
        live = [i for i, up in enumerate(self.up) if up]
        panic = not live
        live = live or list(range(len(self._bases)))
        self._next += 1
        return live[self._next % len(live)], panic

    async def call(self, label: str, token: str, message: object) -> Call:
        index, panic = self.pick()
        call = dataclasses.replace(
            await send(self._clients[index], index, label, token, message), panic=panic
        )
        if call.status is None:
            self._set(index, False, f"out: {call.detail}")
        return call

    async def check(self) -> None:
        """One round of health checks."""
        answers = await asyncio.gather(*(self._healthy(c) for c in self._clients))
        for index, (healthy, why) in enumerate(answers):
            self._failed_checks[index] = 0 if healthy else self._failed_checks[index] + 1
            if healthy:
                self._set(index, True, "in")
            elif self._failed_checks[index] >= self._unhealthy_after:
                self._set(index, False, f"out: {why}")

    def ejected(self, index: int) -> list[float]:
        """When `index` was taken out of rotation."""
        return [t for t, i, what in self.events if i == index and what.startswith("out")]

    async def _healthy(self, client: httpx.AsyncClient) -> tuple[bool, str]:
        try:
            response = await client.get("/healthz", timeout=1.0)
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        return response.status_code == 200, f"healthz {response.status_code}"

    def _set(self, index: int, up: bool, why: str) -> None:
        if self.up[index] != up:
            self.up[index] = up
            self.events.append((time.time(), index, why))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check()


async def drive(
    balancer: Balancer,
    clients: Sequence[tuple[str, str]],
    seconds: float,
    *,
    stop: asyncio.Event | None = None,
    pause: float = 0.0,
    max_calls: int = 1_000_000,
) -> list[Call]:
    """Each (label, token) client calls web_search through `balancer` until told to stop.

    Bounded: every client stops after `seconds`, once `stop` is set, or after
    `max_calls` calls. `pause` is each client's think time between calls.
    """
    calls: list[Call] = []
    deadline = time.monotonic() + seconds

    async def client(label: str, token: str) -> None:
        for n in range(max_calls):
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return
            calls.append(await balancer.call(label, token, tools_call("web_search", SEARCH, n)))
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(client(label, token) for label, token in clients))
    return calls


async def until(
    base: str, token: str, refused: bool, *, timeout: float, interval: float = 0.01
) -> Call:
    """Poll one replica directly until the token is refused (or accepted); the deciding call."""
    deadline = time.monotonic() + timeout
    async with http_client(base, connections=1) as http:
        while True:
            call = await send(http, -1, "probe", token, tools_call("web_search", SEARCH))
            if (call.status == 401) if refused else call.ok:
                return call
            assert time.monotonic() < deadline, f"{base}: still {call} after {timeout} s"
            await asyncio.sleep(interval)


async def on_every_replica(
    bases: Sequence[str], token: str, *, refused: bool, timeout: float
) -> list[Call]:
    """`until` on every replica at once."""
    return list(await asyncio.gather(*(until(b, token, refused, timeout=timeout) for b in bases)))


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
