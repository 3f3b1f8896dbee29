"""A real `redis-server` on 127.0.0.1 for the tests that need one, and a Sentinel topology:
a primary, its replicas and three `redis-sentinel`s (optionally TLS and ACL users)."""

from __future__ import annotations

import contextlib
import datetime
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from mcp_warden.demo.harness import free_port, stop, wait_for_port
from tests.support.procs import required
from tests.support.tls import TestPki
from tests.support.waiting import eventually


@dataclass
class RedisServer:
    """A redis-server process the test controls (it may stop and restart it)."""

    binary: str
    port: int
    workdir: Path
    persistent: bool = False  # appendonly yes in workdir: a restart keeps the data
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 10.0, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def redis_binary() -> str:
    """redis-server's path, or skip (fail in CI, where MCP_WARDEN_REQUIRE_REDIS=1)."""
    return _binary("redis-server")


def _binary(name: str) -> str:
    """The path of `name` (a Debian package of the same name), or skip; fail in CI."""
    reason = f"{name} not installed (apt-get install {name}; .ci/run does it)"
    return required(shutil.which(name), reason, "MCP_WARDEN_REQUIRE_REDIS")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test."""
    server = RedisServer(redis_binary(), free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- Redis Sentinel: a primary, its replicas and three Sentinels ---------------


SERVICE = "warden"
"""The service (`sentinel monitor` name) the topology's Sentinels watch."""
DOWN_AFTER_MS = 500
"""`down-after-milliseconds` by default: how long the primary may be silent before a Sentinel
calls it down."""
FAILOVER_TIMEOUT_MS = 2000
"""`failover-timeout`: short, so a failed attempt is retried soon (the default is 3 minutes)."""


def sentinel_binary() -> str:
    """redis-sentinel's path, or skip (fail in CI, where MCP_WARDEN_REQUIRE_REDIS=1)."""
    return _binary("redis-sentinel")


@dataclass(frozen=True)
class Access:
    """How clients and peers authenticate and encrypt: TLS, an ACL user on the data nodes
    (the default user off) and an ACL user on the Sentinels (theirs off too)."""

    pki: TestPki | None = None
    user: str | None = None  # the data nodes' ACL user, also used by replicas and Sentinels
    password: str | None = None
    sentinel_user: str | None = None  # the Sentinels' ACL user, also used between Sentinels
    sentinel_password: str | None = None

    def listen(self, port: int) -> list[str]:
        """The config lines of a port (TLS: no plain port, TLS replication, no client certs)."""
        if self.pki is None:
            return [f"port {port}"]
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self.pki.cert_file}",
            f"tls-key-file {self.pki.key_file}",
            f"tls-ca-cert-file {self.pki.ca_file}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]

    def client_kwargs(self) -> dict[str, Any]:
        """redis.Redis keyword arguments to reach a data node as the ACL user."""
        kwargs: dict[str, Any] = {"username": self.user, "password": self.password}
        if self.pki is not None:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.pki.ca_file))
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "username": self.sentinel_user,
            "password": self.sentinel_password,
        }
        if self.pki is not None:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.pki.ca_file))
        return kwargs


@dataclass
class ConfiguredRedis:
    """A redis-server or redis-sentinel started from a config file it may rewrite (Sentinels do)."""

    binary: str
    port: int
    workdir: Path
    lines: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.workdir / "redis.conf"

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        """Start it; the config is written the first time only (a restart keeps its rewrites)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.conf.exists():
            self.conf.write_text(
                "\n".join(["bind 127.0.0.1", f"dir {self.workdir}", *self.lines]) + "\n"
            )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, 10.0, self.proc)

    def kill(self) -> None:
        """SIGKILL, as a crashed host: no shutdown, no last write to disk."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@dataclass
class SentinelTopology:
    """nodes[0] starts as the primary, the others as its replicas; three Sentinels watch it."""

    nodes: list[ConfiguredRedis]
    sentinels: list[ConfiguredRedis]
    access: Access = field(default_factory=Access)

    @property
    def url(self) -> str:
        """The MCP_REVOCATION_URL of the service (passwords go to MCP_REDIS_*PASSWORD)."""
        scheme = "rediss+sentinel" if self.access.pki is not None else "redis+sentinel"
        user = f"{self.access.user}@" if self.access.user else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = f"?sentinel_user={self.access.sentinel_user}" if self.access.sentinel_user else ""
        return f"{scheme}://{user}{hosts}/{SERVICE}/0{query}"

    def env(self) -> dict[str, str]:
        """The settings a process needs for `url`: the passwords, and the test CA for TLS."""
        env = {"MCP_REVOCATION_URL": self.url}
        if self.access.password:
            env["MCP_REDIS_PASSWORD"] = self.access.password
        if self.access.sentinel_password:
            env["MCP_REDIS_SENTINEL_PASSWORD"] = self.access.sentinel_password
        if self.access.pki is not None:
            env["SSL_CERT_FILE"] = str(self.access.pki.ca_file)
        return env

    def node(self, port: int) -> ConfiguredRedis:
        return next(node for node in self.nodes if node.port == port)

    def client(self, node: ConfiguredRedis) -> redis.Redis:
        """A direct client of one data node (not through the Sentinels)."""
        return redis.Redis(
            host="127.0.0.1", port=node.port, decode_responses=True, **self.access.client_kwargs()
        )

    def sentinel_state(self, sentinel: ConfiguredRedis) -> dict[str, Any] | None:
        """SENTINEL MASTER <service> as this Sentinel sees it, or None if it does not answer."""
        client = redis.Redis(
            host="127.0.0.1",
            port=sentinel.port,
            socket_timeout=1.0,
            decode_responses=True,
            **self.access.sentinel_kwargs(),
        )
        try:
            state = client.sentinel_master(SERVICE)
        except redis.RedisError:
            return None
        finally:
            client.close()
        assert isinstance(state, dict)
        return state

    def event_time(self, event: str) -> float | None:
        """When the first Sentinel logged `event` ("+switch-master", ...), from its log line's
        timestamp (local time, milliseconds), or None if none has yet."""
        times = []
        for sentinel in self.sentinels:
            for line in sentinel.log.read_text(errors="replace").splitlines():
                # "4066:X 01 Dec 2026 02:33:16.999 # +switch-master warden 127.0.0.1 ..."
                parts = line.split(" ", 6)
                if len(parts) == 7 and parts[5] == "#" and parts[6].startswith(event + " "):
                    stamp = datetime.datetime.strptime(" ".join(parts[1:5]), "%d %b %Y %H:%M:%S.%f")
                    times.append(stamp.timestamp())
        return min(times, default=None)

    def settled(self, primary: int, replicas: int) -> bool:
        """Every Sentinel names `primary`, sees it up with `replicas` replicas, and the others."""
        for sentinel in self.sentinels:
            state = self.sentinel_state(sentinel)
            if (
                state is None
                or int(state["port"]) != primary
                or not state["is_master"]
                or state["is_sdown"]
                or state["is_odown"]
                or int(state["num-slaves"]) != replicas
                or int(state["num-other-sentinels"]) != len(self.sentinels) - 1
            ):
                return False
        return True

    def synced_replicas(self, primary: ConfiguredRedis) -> int:
        """How many replicas the primary has with their link up (INFO replication)."""
        with contextlib.closing(self.client(primary)) as client:
            info = client.info("replication")
        links = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return sum(1 for link in links if link.get("state") == "online")

    def rejoin(self, node: ConfiguredRedis, primary: ConfiguredRedis) -> None:
        """Start a killed node again as a replica of `primary`, as an operator brings one back."""
        with node.conf.open("a") as conf:
            conf.write(f"replicaof 127.0.0.1 {primary.port}\n")
        node.start()

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.nodes]:
            proc.stop()


def _node_lines(access: Access, port: int, primary: int | None) -> list[str]:
    lines = [*access.listen(port), "save ''", "appendonly yes", "protected-mode yes"]
    if primary is not None:
        lines.append(f"replicaof 127.0.0.1 {primary}")
    if access.user is not None:
        lines += [
            "user default off",
            f"user {access.user} on >{access.password} ~* &* +@all",
            f"masteruser {access.user}",
            f"masterauth {access.password}",
        ]
    return lines


def _sentinel_lines(access: Access, port: int, primary: int, down_after_ms: int) -> list[str]:
    lines = [
        *access.listen(port),
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2",
        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]
    if access.user is not None:
        lines += [
            f"sentinel auth-user {SERVICE} {access.user}",
            f"sentinel auth-pass {SERVICE} {access.password}",
        ]
    if access.sentinel_user is not None:
        lines += [
            "user default off",
            f"user {access.sentinel_user} on >{access.sentinel_password} ~* &* +@all",
            f"sentinel sentinel-user {access.sentinel_user}",
            f"sentinel sentinel-pass {access.sentinel_password}",
        ]
    return lines


@contextlib.contextmanager
def sentinel_topology(
    root: Path,
    *,
    replicas: int = 1,
    access: Access | None = None,
    down_after_ms: int = DOWN_AFTER_MS,
    timeout: float = 30.0,
) -> Iterator[SentinelTopology]:
    """Start a primary, `replicas` replicas and three Sentinels on free 127.0.0.1 ports under
    `root`; yield once every Sentinel sees the primary, its replicas and the other two."""
    access = access or Access()
    server, sentinel = redis_binary(), sentinel_binary()
    ports = [free_port() for _ in range(replicas + 1)]
    nodes = [
        ConfiguredRedis(server, port, root / f"node-{port}", _node_lines(access, port, primary))
        for port, primary in zip(ports, [None] + [ports[0]] * replicas, strict=True)
    ]
    topology = SentinelTopology(nodes, [], access)
    for _ in range(3):
        port = free_port()
        topology.sentinels.append(
            ConfiguredRedis(
                sentinel,
                port,
                root / f"sentinel-{port}",
                _sentinel_lines(access, port, ports[0], down_after_ms),
            )
        )
    try:
        for proc in [*topology.nodes, *topology.sentinels]:
            proc.start()
        eventually(
            lambda: (
                topology.settled(ports[0], replicas)
                and topology.synced_replicas(topology.nodes[0]) == replicas
            ),
            timeout,
            "the Sentinels see the primary, its replicas and each other",
            poll=0.1,
        )
        yield topology
    finally:
        topology.stop()
