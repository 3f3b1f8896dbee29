"""Denylist figures: lookups with 1,000 and 1,000,000 revoked jtis side by side, sync, memory.

Every backend answers `is_revoked` from an in-process view, so a lookup must
cost the same with a million entries as with a thousand (ratio ~1). Sync cost
is what one new revocation costs a reader (incremental), propagation is the
time until another instance refuses the token with the default refresh
(MCP_REVOCATION_REFRESH_SECONDS).
The Redis figures use a redis-server this module starts on a free 127.0.0.1
port and stops (skipped, with a note, when redis-server is not installed).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from bench.common import Figure, per_call_us
from mcp_warden.config import DEFAULTS, Settings
from mcp_warden.tokens.revocation import Denylist, MemoryDenylist, SyncedDenylist, open_denylist
from mcp_warden.tokens.revocation.redis import RedisStore, connect
from mcp_warden.tokens.revocation.rules import Expiry
from mcp_warden.tokens.revocation.sqlite import SqliteStore
from mcp_warden.tokens.revocation.store import Entries, Store
from mcp_warden.tokens.revocation.view import RevocationView

SECTION = "Revocation denylist (1,000 vs 1,000,000 revoked jtis)"
SMALL, LARGE = 1_000, 1_000_000
MAX_TTL, LEEWAY = DEFAULTS.token_max_ttl, DEFAULTS.token_leeway
REFRESH = DEFAULTS.revocation_refresh_seconds
LOOKUPS = 200_000
SYNC_SAMPLES = 20
PROPAGATION_SAMPLES = 5


def revoked_jtis(count: int, now: int) -> dict[str, int]:
    """`count` random 22-character base64url jtis (as minted: 128 bits), expiring in 1 to 24 h."""
    text = base64.urlsafe_b64encode(os.urandom(count * 17)).decode()
    rng = random.Random(count)
    return {text[i * 22 : i * 22 + 22]: now + rng.randrange(3600, MAX_TTL) for i in range(count)}


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str | None]:
    """A throwaway redis-server on a free 127.0.0.1 port (None when it is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("revocation: redis-server not installed, skipping Redis figures", file=sys.stderr)
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly"]
    proc = subprocess.Popen(
        [*argv, "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def open_store(url: str, *, empty: bool = False) -> Store:
    """The bare store at `url` (no view, no thread); `empty` flushes a Redis database first."""
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")), max_ttl=MAX_TTL, leeway=LEEWAY)
    client, where = connect(url)
    if empty:
        client.flushdb()
    return RedisStore(client, where, max_ttl=MAX_TTL, leeway=LEEWAY)


def settings(url: str, refresh: float = REFRESH) -> Settings:
    return Settings(
        revocation_url=url,
        token_max_ttl=MAX_TTL,
        token_leeway=LEEWAY,
        revocation_refresh_seconds=refresh,
    )


class Measured:
    """The figures of one backend at one size."""

    def __init__(self) -> None:
        self.hit_us = self.miss_us = 0.0
        self.load_s: float | None = None
        self.sync_us: float | None = None
        self.propagation_ms: float | None = None


def lookups(denylist: Denylist, hit: str, now: int, into: Measured) -> None:
    assert denylist.is_revoked(hit, "user", now)
    assert not denylist.is_revoked("not-revoked", "user", now)
    into.hit_us = per_call_us(lambda: denylist.is_revoked(hit, "user", now), number=LOOKUPS)
    into.miss_us = per_call_us(
        lambda: denylist.is_revoked("not-revoked", "user", now), number=LOOKUPS
    )


def measure_memory(jtis: dict[str, int], now: int) -> Measured:
    into = Measured()
    denylist = MemoryDenylist(max_ttl=MAX_TTL, leeway=LEEWAY)
    for jti, exp in jtis.items():
        denylist.revoke_jti(jti, exp)
    lookups(denylist, next(iter(jtis)), now, into)
    return into


def measure_shared(url: str, jtis: dict[str, int], now: int) -> Measured:
    into = Measured()
    writer = open_store(url, empty=True)
    writer.restore(Entries(jtis=jtis), now)
    start = time.perf_counter()
    # A reader whose thread stays out of the way: we call sync() ourselves.
    reader = open_denylist(settings(url, refresh=3600.0))
    into.load_s = time.perf_counter() - start
    watcher = open_denylist(settings(url))
    try:
        assert isinstance(reader, SyncedDenylist)
        assert len(reader) == len(jtis), (len(reader), len(jtis))
        lookups(reader, next(iter(jtis)), now, into)
        times = []
        for i in range(SYNC_SAMPLES):
            writer.put(Entries(jtis={f"sync-{i}": now + 600}), now)
            start = time.perf_counter()
            reader.sync()
            times.append(time.perf_counter() - start)
            assert reader.is_revoked(f"sync-{i}", "user", now)
        into.sync_us = statistics.median(times) * 1e6
        worst = 0.0
        for i in range(PROPAGATION_SAMPLES):
            time.sleep(secrets.randbelow(int(REFRESH * 1000)) / 1000)  # a random refresh phase
            start = time.perf_counter()
            writer.put(Entries(jtis={f"seen-{i}": now + 600}), now)
            while not watcher.is_revoked(f"seen-{i}", "user", now):
                time.sleep(0.0005)
            worst = max(worst, time.perf_counter() - start)
        into.propagation_ms = worst * 1000
    finally:
        for closing in (reader, writer, watcher):
            closing.close()
    return into


def view_memory(jtis: dict[str, int]) -> tuple[float, float]:
    """Bytes per entry of a RevocationView and of a plain dict holding the same (new) strings."""
    sizes = []
    for build in ("view", "dict"):
        gc.collect()
        tracemalloc.start()
        entries = {"".join(jti): exp for jti, exp in jtis.items()}  # strings owned by the copy
        if build == "view":
            view = RevocationView(Expiry(max_ttl=MAX_TTL, leeway=LEEWAY))
            view.merge(Entries(jtis=entries))
            del entries
            held: object = view
        else:
            held = entries
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0] / len(jtis))
        tracemalloc.stop()
        del held
    return sizes[0], sizes[1]


def run() -> list[Figure]:
    now = int(time.time())
    data = {size: revoked_jtis(size, now) for size in (SMALL, LARGE)}
    results: dict[tuple[str, int], Measured] = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        urls = {"sqlite": f"sqlite:///{tmp}/revocations-{{size}}.db"}
        if redis_url is not None:
            urls["redis"] = redis_url
        for size, jtis in data.items():
            print(f"  memory, {size:,} entries", file=sys.stderr, flush=True)
            results["memory", size] = measure_memory(jtis, now)
            for name, url in urls.items():
                print(f"  {name}, {size:,} entries", file=sys.stderr, flush=True)
                results[name, size] = measure_shared(url.format(size=size), jtis, now)
    plain = {jti: exp for jti, exp in data[SMALL].items()}
    hit = next(iter(plain))
    floor = per_call_us(lambda: hit in plain, number=LOOKUPS)
    view_bytes, dict_bytes = view_memory(data[LARGE])
    return figures(results, floor, view_bytes, dict_bytes)


def figures(
    results: dict[tuple[str, int], Measured], floor: float, view_bytes: float, dict_bytes: float
) -> list[Figure]:
    out = [
        Figure(
            SECTION,
            "memory: is_revoked miss, 1k",
            results["memory", SMALL].miss_us,
            "us",
            "plain dict lookup (the tutorial's table)",
            floor,
            "the floor: a few dict lookups",
        )
    ]
    for backend in dict.fromkeys(name for name, _ in results):
        out += backend_figures(backend, results[backend, SMALL], results[backend, LARGE])
    out.append(
        Figure(
            SECTION,
            "view memory per entry, 1M jtis",
            view_bytes,
            "B",
            "plain dict jti -> exp",
            dict_bytes,
            f"{view_bytes * LARGE / 2**20:,.0f} MiB for 1M",
        )
    )
    return out


def backend_figures(backend: str, small: Measured, large: Measured) -> list[Figure]:
    out = []
    flat = "ratio ~1: no growth with size"
    for what, unit, goal, a, b in (
        ("is_revoked hit", "us", flat, small.hit_us, large.hit_us),
        ("is_revoked miss", "us", flat, small.miss_us, large.miss_us),
        ("sync() bringing 1 new revocation", "us", flat, small.sync_us, large.sync_us),
        ("initial load of the view", "s", "once per start", small.load_s, large.load_s),
    ):
        if a is not None and b is not None:
            name = f"{backend}: {what}"
            out.append(Figure(SECTION, f"{name}, 1M", b, unit, f"{name}, 1k", a, goal))
    if large.propagation_ms is not None:
        out.append(
            Figure(
                SECTION,
                f"{backend}: seen by another instance, worst of {PROPAGATION_SAMPLES}, 1M",
                large.propagation_ms,
                "ms",
                "refresh interval",
                REFRESH * 1000,
                "< 1000 ms",
            )
        )
    return out
