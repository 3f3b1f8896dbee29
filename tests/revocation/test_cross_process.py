"""A revocation made in one process is refused by another within 1 s (real processes)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from mcp_warden.config import Settings
from mcp_warden.tokens.revocation import Denylist, SyncedDenylist
from tests.support.revocation import peer, read_line, settings_for

pytestmark = pytest.mark.slow

Open = Callable[..., Denylist]


SAMPLES = 4


@pytest.mark.parametrize("kind", ["jti", "sub"])
def test_another_process_refuses_within_one_second(
    shared_url: str, kind: str, opened: Open
) -> None:
    # The default refresh interval (0.5 s), as a deployment would run it.
    assert Settings().revocation_refresh_seconds == 0.5
    here = opened(settings_for(shared_url))
    iat = int(time.time())
    tokens = [f"jti-{i}/sub-{i}" for i in range(SAMPLES)]
    latencies = []
    with peer(shared_url, "watch", str(iat), *tokens) as proc:
        assert read_line(proc, 20.0) == "ready"
        for token in tokens:
            # Revoke at a random phase of the peer's sync interval.
            time.sleep(random.uniform(0.0, 0.5))
            jti, sub = token.split("/")
            revoked_at = time.time()
            if kind == "jti":
                here.revoke_jti(jti, iat + 300)
            else:
                here.revoke_sub(sub, iat)
            line = read_line(proc, 10.0).split()
            assert line[:2] == ["seen", token], line
            latencies.append(float(line[2]) - revoked_at)
    scheme = shared_url.split(":", 1)[0]
    figures = ", ".join(f"{s * 1000:.0f}" for s in latencies)
    print(f"{scheme} {kind} revocation seen by another process after [{figures}] ms")
    assert all(0 <= s < 1.0 for s in latencies), f"{scheme}: seen after {latencies} s"


def test_concurrent_writers_lose_nothing(shared_url: str, opened: Open) -> None:
    exp = int(time.time()) + 300
    here = opened(settings_for(shared_url))
    assert isinstance(here, SyncedDenylist)
    with (
        peer(shared_url, "revoke", "a", "150", str(exp)) as a,
        peer(shared_url, "revoke", "b", "150", str(exp)) as b,
    ):
        for proc in (a, b):
            assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    here.sync()
    missing = [
        f"{p}-{i}" for p in "ab" for i in range(150) if not here.is_revoked(f"{p}-{i}", "x", 0)
    ]
    assert missing == []
    assert len(here) == 300
