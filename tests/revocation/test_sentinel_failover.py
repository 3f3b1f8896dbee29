"""SIGKILL of the Redis primary under load: the Sentinels promote the replica, nothing is lost.

A primary, a replica and three redis-sentinels (tests.support.redis_server),
two `mcp-warden serve` processes on the Sentinel URL, tool calls with a valid
token and with tokens revoked before the load, and a writer that revokes a new
token every 20 ms through the code `token revoke` runs. The primary
is SIGKILLed in the middle. Checked:

- every revocation reported done before the kill is on the promoted replica
  and refused by both servers (WAIT: reported done = on a replica);
- no call with a revoked token is ever answered 200 (401 throughout);
- the first revocation the new primary takes reaches both servers within
  MCP_REVOCATION_STALE_SECONDS of it;
- what the servers do in the window: with STALE longer than the failover,
  nothing shows (no 503, /healthz 200); with STALE shorter, they fail closed
  (503 `revocation_unavailable`, /healthz 503) and recover without a restart;
- after the failover, with no replica left, `token revoke` exits 1 "not
  confirmed" (the servers refuse the token all the same); once the old primary
  is back as a replica it reports success again.

`pytest -q -n0 -s tests/revocation/test_sentinel_failover.py` prints the
measured window (docs/deployment.md, "Redis Sentinel").
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mcp_warden.config import Settings
from mcp_warden.demo.harness import (
    background,
    free_port,
    jsonrpc_headers,
    tools_call,
    wait_for_line,
)
from mcp_warden.tokens.jws import b64url_decode
from mcp_warden.tokens.revocation import RevocationStoreError, open_denylist
from mcp_warden.tokens.revocation.redis import PREFIX
from mcp_warden.tokens.revocation.store import RevocationUnconfirmed
from tests.support.cli import error_line
from tests.support.redis_server import Access, SentinelTopology, sentinel_topology
from tests.support.server import BANNER, Deployment, deployment
from tests.support.tls import make_pki
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

AUDIENCE = "https://mcp.example.test/mcp"
SWITCHED = "+switch-master"
EVENTS = ("+sdown", "+odown", "+promoted-slave", SWITCHED)
"""What the Sentinels log during the failover, in order."""
GRACE = 0.2
"""Seconds of margin for sampling when the scenario's timings are compared."""
CALL = json.dumps(tools_call("web_search", {"query": "failover"})).encode()


@dataclass(frozen=True)
class Seen:
    """One answer a server gave (wall-clock time of the answer)."""

    server: int
    at: float
    label: str  # "good", "revoked", "new" (the first token revoked after the kill), "healthz"
    status: int | None
    detail: str = ""


@dataclass(frozen=True)
class Write:
    """One revocation the writer attempted: "confirmed", "unconfirmed" (on the primary, no
    replica acknowledged it) or "failed" (not written)."""

    writer: str  # "wait": WAIT for a replica (MCP_REDIS_WAIT_REPLICAS=1); "probe": no WAIT
    token: str
    jti: str
    start: float
    end: float
    outcome: str


@dataclass
class Lab:
    """The topology, the servers, and what the load threads saw and wrote."""

    topology: SentinelTopology
    deployment: Deployment
    servers: list[str]  # base URLs
    seen: list[Seen] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    watch: str | None = None  # a token the load also sends (label "new") once it is set

    def mint(self, sub: str) -> str:
        return self.deployment.mint(["web_search"], sub=sub, aud=AUDIENCE)

    def status(self, http: httpx.Client, token: str) -> tuple[int, str]:
        response = http.post("/mcp", content=CALL, headers=jsonrpc_headers(token))
        body = response.json()
        if response.status_code == 401:
            return 401, str(body.get("error_description"))
        if isinstance(body.get("error"), dict):
            return response.status_code, str(body["error"].get("message"))
        is_error = body.get("result", {}).get("isError")
        return response.status_code, "tool error" if is_error else ""

    def refused_everywhere(self, token: str) -> bool:
        with contextlib.ExitStack() as stack:
            for base in self.servers:
                http = stack.enter_context(_client(base))
                if self.status(http, token)[0] != 401:
                    return False
        return True

    def calls(self, index: int, good: str, revoked: list[str]) -> None:
        """Load on server `index`: the valid token, then each revoked one, round and round."""
        with _client(self.servers[index]) as http:
            while not self.stop.is_set():
                calls = [("good", good)] + [("revoked", t) for t in revoked]
                if self.watch is not None:
                    calls.append(("new", self.watch))
                for label, token in calls:
                    try:
                        status, detail = self.status(http, token)
                    except httpx.HTTPError as exc:
                        status, detail = None, type(exc).__name__
                    self.seen.append(Seen(index, time.time(), label, status, detail))

    def healthy_since(self, since: float) -> bool:
        """Every server answered /healthz 200 after `since`."""
        return all(
            any(
                s.server == i and s.label == "healthz" and s.status == 200 and s.at > since
                for s in self.seen
            )
            for i in range(len(self.servers))
        )

    def health(self, index: int) -> None:
        with _client(self.servers[index]) as http:
            while not self.stop.wait(0.02):  # a sampling period, not a wait for a condition
                try:
                    status: int | None = http.get("/healthz").status_code
                except httpx.HTTPError:
                    status = None
                self.seen.append(Seen(index, time.time(), "healthz", status))

    def first_refusals(self, label: str) -> list[float]:
        """When each server first answered 401 to `label`, if every server has."""
        firsts = []
        for index in range(len(self.servers)):
            times = [
                s.at
                for s in self.seen
                if s.server == index and s.label == label and s.status == 401
            ]
            if not times:
                return []
            firsts.append(min(times))
        return firsts

    def writer(self, name: str, settings: Settings, *, once: bool = False) -> None:
        """Revoke a new token again and again with `token revoke`'s code (open_denylist).

        `once`: stop after the first write that reached Redis, and have the load send
        its token (`watch`)."""
        denylist = open_denylist(settings, follow=False)
        try:
            number = 0
            while not self.stop.wait(0.02):
                number += 1
                token = self.mint(f"{name}-{number}")
                jti = _jti(token)
                start = time.time()
                try:
                    denylist.revoke_jti(jti, int(_claims(token)["exp"]))
                    outcome = "confirmed"
                except RevocationUnconfirmed:
                    outcome = "unconfirmed"
                except RevocationStoreError:
                    outcome = "failed"
                self.writes.append(Write(name, token, jti, start, time.time(), outcome))
                if once and outcome != "failed":
                    self.watch = token
                    return
        finally:
            denylist.close()


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=5.0, trust_env=False)


def _claims(token: str) -> dict[str, int | str]:
    claims: dict[str, int | str] = json.loads(b64url_decode(token.split(".")[1]))
    return claims


def _jti(token: str) -> str:
    return str(_claims(token)["jti"])


@contextlib.contextmanager
def _threads(lab: Lab, settings: Settings, good: str, revoked: list[str]) -> Iterator[None]:
    threads = [threading.Thread(target=lab.writer, args=("wait", settings), daemon=True)]
    for index in range(len(lab.servers)):
        threads.append(threading.Thread(target=lab.calls, args=(index, good, revoked), daemon=True))
        threads.append(threading.Thread(target=lab.health, args=(index,), daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        lab.stop.set()
        for thread in threads:
            thread.join(15)


def _spans(seen: list[Seen], server: int, label: str, status: int, since: float) -> str:
    """First and last time (s after `since`) this server answered `label` with `status`."""
    times = [
        s.at - since for s in seen if s.server == server and s.label == label and s.status == status
    ]
    return f"{min(times):.2f}-{max(times):.2f} s" if times else "never"


@dataclass(frozen=True)
class Window:
    """Wall-clock times of the failover."""

    kill: float
    events: dict[str, float]  # the first Sentinel's log: +sdown, +odown, +promoted-slave...
    first: Write  # the first revocation the new primary took (the probe writer, no WAIT)
    everywhere: float  # every server refuses that token (the load sends it once written)

    @property
    def switched(self) -> float:
        """+switch-master: a Sentinel names the promoted replica; clients find it from now."""
        return self.events[SWITCHED]

    def figures(self) -> dict[str, float]:
        return {
            **{f"kill->{event}": at - self.kill for event, at in self.events.items()},
            "kill->new primary takes a write": self.first.end - self.kill,
            "kill->that revocation refused by every server": self.everywhere - self.kill,
            "+switch-master->refused by every server": self.everywhere - self.switched,
        }


def _serve(stack: contextlib.ExitStack, lab: Deployment, count: int) -> list[str]:
    """`count` `mcp-warden serve` processes on the lab's settings; their base URLs."""
    servers = []
    for index in range(count):
        port = free_port()
        log = lab.root / f"serve-{index}.log"
        argv = [sys.executable, "-m", "mcp_warden", "serve", "--port", str(port)]
        proc = stack.enter_context(background(argv, env=lab.env, log=log))
        wait_for_line(log, proc, BANNER, 30.0)
        servers.append(f"http://127.0.0.1:{port}")
    return servers


def _failover(lab: Lab, settings: Settings, good: str, revoked: list[str]) -> Window:
    """Load, writes, SIGKILL of the primary, promotion; returns once every server is healthy."""
    topology = lab.topology
    primary = topology.nodes[0]
    with _threads(lab, settings, good, revoked):
        eventually(
            lambda: (
                sum(w.outcome == "confirmed" for w in lab.writes) >= 10
                and all(
                    sum(s.server == i and s.label == "good" for s in lab.seen) >= 10
                    for i in range(len(lab.servers))
                )
            ),
            30,
            "load and writes under way",
        )
        kill = time.time()
        primary.kill()
        # A second writer without WAIT: the time its first write returns is the time the
        # new primary took it (with WAIT, each would also wait 1 s for an absent replica).
        probe = threading.Thread(
            target=lab.writer,
            args=("probe", settings.with_overrides(redis_wait_replicas=0)),
            kwargs={"once": True},
            daemon=True,
        )
        probe.start()
        eventually(lambda: topology.event_time(SWITCHED) is not None, 30, "a Sentinel names it")
        events = {event: topology.event_time(event) for event in EVENTS}
        eventually(
            lambda: any(w.writer == "probe" and w.outcome != "failed" for w in lab.writes),
            30,
            "the new primary takes a write",
        )
        first = next(w for w in lab.writes if w.writer == "probe" and w.outcome != "failed")
        eventually(lambda: bool(lab.first_refusals("new")), 30, "the new revocation everywhere")
        everywhere = max(lab.first_refusals("new"))
        eventually(lambda: lab.healthy_since(everywhere), 10, "every server healthy again")
    probe.join(15)
    return Window(kill, {e: at for e, at in events.items() if at is not None}, first, everywhere)


def _check_nothing_lost(lab: Lab, window: Window, revoked: list[str]) -> list[Write]:
    """Every revocation reported done before the kill is on the new primary and refused."""
    before = [w for w in lab.writes if w.end < window.kill and w.outcome == "confirmed"]
    assert before
    with contextlib.closing(lab.topology.client(lab.topology.nodes[1])) as new_primary:
        for jti in [w.jti for w in [*before, window.first]] + [_jti(t) for t in revoked]:
            assert new_primary.zscore(PREFIX + "jti", jti) is not None, jti
    for write in before:
        assert lab.refused_everywhere(write.token), write
    return before


def _check_answers(lab: Lab, fail_closed: bool) -> None:
    """A revoked token was never accepted; the valid one refused only as unavailable, and
    only when the failover outlasted MCP_REVOCATION_STALE_SECONDS."""
    revoked_answers = {(s.status, s.detail) for s in lab.seen if s.label == "revoked"}
    assert revoked_answers == {(401, "revoked: the token has been revoked")}, revoked_answers
    for status, detail in {(s.status, s.detail) for s in lab.seen if s.label == "good"}:
        assert (status, detail) == (200, "") or (
            status == 503 and detail.startswith("revocation_unavailable")
        ), (status, detail)
    unavailable = {(s.server, s.label) for s in lab.seen if s.status == 503}
    if fail_closed:
        everywhere = {(i, label) for i in range(len(lab.servers)) for label in ("healthz", "good")}
        assert everywhere <= unavailable
    else:
        assert not unavailable


def _report(lab: Lab, window: Window, before: list[Write], title: str) -> None:
    print(f"\nSentinel failover ({title}):")
    for name, seconds in window.figures().items():
        print(f"  {name}: {seconds:.2f} s")
    after = [w for w in lab.writes if w.start > window.kill]
    print(
        f"  revocations confirmed before the kill: {len(before)}, lost: 0; calls: "
        f"{sum(s.label != 'healthz' for s in lab.seen)}, revoked tokens answered 200: 0; "
        f"writes failed during the failover: {sum(w.outcome == 'failed' for w in after)}"
    )
    for index in range(len(lab.servers)):
        print(
            f"  server {index}: /healthz 503 "
            f"{_spans(lab.seen, index, 'healthz', 503, window.kill)}, valid token 503 "
            f"{_spans(lab.seen, index, 'good', 503, window.kill)} after the kill"
        )


@dataclass(frozen=True)
class Scenario:
    tls_acl: bool  # TLS and ACL users on the data nodes and the Sentinels
    down_after_ms: int  # the Sentinels' down-after-milliseconds
    refresh: float  # MCP_REVOCATION_REFRESH_SECONDS
    stale: float  # MCP_REVOCATION_STALE_SECONDS

    @property
    def fail_closed(self) -> bool:
        """Whether the failover is meant to outlast STALE (the replicas then refuse tokens)."""
        return self.stale * 1000 < self.down_after_ms

    def __str__(self) -> str:
        access = "TLS and ACL users" if self.tls_acl else "plain"
        return (
            f"{access}, down-after {self.down_after_ms} ms, "
            f"refresh {self.refresh} s, stale {self.stale} s"
        )


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(Scenario(False, 500, 0.5, 10.0), id="stale-longer-than-the-failover"),
        pytest.param(Scenario(True, 2000, 0.1, 1.0), id="stale-shorter-than-the-failover-tls"),
    ],
)
def test_sigkill_of_the_primary_under_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: Scenario
) -> None:
    access = Access()
    stale = scenario.stale
    if scenario.tls_acl:
        pki = make_pki(tmp_path)
        access = Access(pki, "warden", "data-pw", "watch", "sentinel-pw")
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))  # for the in-process writers
    with (
        sentinel_topology(
            tmp_path / "topology", access=access, down_after_ms=scenario.down_after_ms
        ) as topology,
        deployment(
            tmp_path / "lab",
            **topology.env(),
            MCP_TOKEN_AUDIENCE=AUDIENCE,
            MCP_REVOCATION_REFRESH_SECONDS=str(scenario.refresh),
            MCP_REVOCATION_STALE_SECONDS=str(stale),
        ) as lab_deployment,
        contextlib.ExitStack() as stack,
    ):
        lab = Lab(topology, lab_deployment, _serve(stack, lab_deployment, 2))
        good = lab.mint("alice")
        revoked = [lab.mint(f"leaked-{i}") for i in range(2)]
        for token in revoked:  # the real command, before the load
            done = lab_deployment.cli("token", "revoke", "-", input=token)
            assert done.returncode == 0, done.stderr
        eventually(
            lambda: all(lab.refused_everywhere(t) for t in revoked), 5, "revoked before the load"
        )

        window = _failover(lab, Settings.from_env(lab_deployment.env), good, revoked)

        assert window.everywhere - window.switched <= stale
        before = _check_nothing_lost(lab, window, revoked)
        # The premise of the scenario, with a margin for sampling: a replica's last sync
        # before the kill is at most one refresh old, its first after the promotion at most
        # one refresh late.
        failover = window.switched - window.kill
        if scenario.fail_closed:
            assert failover > stale + GRACE, f"failover in {failover:.2f} s, not longer than STALE"
        else:
            assert failover < stale - 2 * scenario.refresh - GRACE, f"failover in {failover:.2f} s"
        _check_answers(lab, scenario.fail_closed)
        _report(lab, window, before, str(scenario))

        # No replica left: reported not confirmed, yet every server refuses it.
        primary, replica = topology.nodes
        lonely = lab.mint("after-the-failover")
        done = lab_deployment.cli("token", "revoke", "-", input=lonely)
        error_line(done, 1, "is not confirmed: 0 of the 1 replica(s)")
        eventually(lambda: lab.refused_everywhere(lonely), stale, "an unconfirmed revocation")
        # The old primary back as a replica of the new one: confirmed again.
        topology.rejoin(primary, replica)
        eventually(lambda: topology.synced_replicas(replica) == 1, 30, "the old primary rejoins")
        again = lab.mint("after-the-rejoin")
        done = lab_deployment.cli("token", "revoke", "-", input=again)
        assert done.returncode == 0, done.stderr
        with contextlib.closing(topology.client(primary)) as new_replica:
            assert new_replica.zscore(PREFIX + "jti", _jti(again)) is not None
