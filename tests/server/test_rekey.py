"""Re-keying the master key under a running server, with no failed call.

The runbook: give the servers MCP_NEW_ENCRYPTION_KEY beside MCP_ENCRYPTION_KEY
(they read under either), run `mcp-warden cred rekey`, then restart them with
the new key alone. Real processes: `serve`, the CLI, the stub upstream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mcp_warden.demo.harness import post, tools_call
from tests.support.credentials import new_master_key
from tests.support.server import Deployment, deployment

SEARCH = {"query": "rekey under load"}
NEW_MASTER_KEY = new_master_key()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("rekey"), MCP_NEW_ENCRYPTION_KEY=NEW_MASTER_KEY) as lab:
        yield lab


def _ok(answer: dict[str, object]) -> bool:
    result = answer.get("result")
    return isinstance(result, dict) and result.get("isError") is False


@pytest.mark.slow
def test_rekey_while_serving_fails_no_call_and_the_new_key_alone_then_serves(
    lab: Deployment,
) -> None:
    token = lab.mint(["web_search"])
    statuses: list[tuple[int, bool]] = []
    stop = threading.Event()

    def keep_calling(url: str) -> None:
        while not stop.is_set():
            response = post(url, tools_call("web_search", SEARCH), token)
            statuses.append((response.status_code, _ok(response.json())))

    with lab.serve() as served:
        caller = threading.Thread(target=keep_calling, args=(served.url,))
        caller.start()
        try:
            time.sleep(0.5)
            done = lab.cli("cred", "rekey")
            assert done.returncode == 0, done.stderr
            before = len(statuses)
            time.sleep(1.0)  # keep calling on the re-keyed store
        finally:
            stop.set()
            caller.join(30)
        assert len(statuses) > before > 0, "calls on both sides of the re-key"
        assert all(s == (200, True) for s in statuses), [s for s in statuses if s != (200, True)]
        print(f"\n{len(statuses)} calls across `cred rekey`, {before} of them before it returned")
    assert NEW_MASTER_KEY not in done.stdout + done.stderr

    # Step 3 of the runbook: the new key alone.
    with lab.serve(env={"MCP_ENCRYPTION_KEY": NEW_MASTER_KEY, "MCP_NEW_ENCRYPTION_KEY": ""}) as s:
        answer = post(s.url, tools_call("web_search", SEARCH), token).json()
        assert _ok(answer), answer
    # And the old key alone no longer opens anything: the leaked key is useless.
    old_only = lab.cli("cred", "get", "scavio_api_key", env={"MCP_NEW_ENCRYPTION_KEY": ""})
    assert old_only.returncode == 1
    assert "MCP_ENCRYPTION_KEY is not the key it was written with" in old_only.stderr
