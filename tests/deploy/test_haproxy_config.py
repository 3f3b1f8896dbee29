"""deploy/haproxy.cfg passes `haproxy -c` as shipped, as the replica tests fill it, and with TLS.

`-c` parses the whole file (conditional blocks, environment variables, every
keyword) without binding anything. A keyword HAProxy accepts but finds
suspect is only a warning (exit 0), so the output must hold no warning either.
tests/replicas runs the same file for real (tests/support/haproxy.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.haproxy import CONFIG, check_config, config_env
from tests.support.tls import make_pki

pytestmark = pytest.mark.slow  # runs haproxy


def checked(env: dict[str, str]) -> None:
    done = check_config(env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Configuration file is valid" in output, output
    assert "WARNING" not in output, output
    assert "ALERT" not in output, output


def test_the_file_as_shipped_is_valid() -> None:
    """Its defaults: three replicas on 127.0.0.1:8001-8003, the systemd instances."""
    checked({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@pytest.mark.parametrize("replicas", [2, 3])
def test_the_file_as_the_replica_tests_fill_it_is_valid(tmp_path: Path, replicas: int) -> None:
    addresses = [f"127.0.0.1:{9001 + n}" for n in range(replicas)]
    env = config_env(
        bind="127.0.0.1:9000", replicas=addresses, stats_socket=tmp_path / "admin.sock"
    )
    checked(env)


def test_the_file_with_tls_termination_is_valid(tmp_path: Path) -> None:
    """MCP_HAPROXY_TLS_CERT: one PEM with the certificate chain and its key."""
    pki = make_pki(tmp_path / "pki")
    bundle = tmp_path / "mcp.pem"
    bundle.write_bytes(pki.cert_file.read_bytes() + pki.key_file.read_bytes())
    bundle.chmod(0o600)
    env = config_env(
        bind="127.0.0.1:9443",
        replicas=["127.0.0.1:9001", "127.0.0.1:9002"],
        stats_socket=tmp_path / "admin.sock",
        MCP_HAPROXY_TLS_CERT=str(bundle),
    )
    checked(env)


def test_retries_are_for_connection_failures_only() -> None:
    """No retry-on keyword but conn-failure: a request that reached a replica is never resent."""
    lines = [line.split("#")[0].split() for line in CONFIG.read_text().splitlines()]
    retry_on = [words for words in lines if words[:1] == ["retry-on"]]
    assert retry_on == [["retry-on", "conn-failure"]]
