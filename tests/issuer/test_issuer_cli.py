"""`mcp-warden issuer serve` start-up: what is not safe is refused in one line, before listening."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from mcp_warden.demo.harness import background, free_port, run_cli, wait_for_line
from tests.issuer.lab import BANNER, issuer_lab

pytestmark = pytest.mark.slow  # real issuer / serve / CLI processes


def serve_args(*extra: str) -> list[str]:
    return ["issuer", "serve", "--port", str(free_port()), *extra]


@pytest.mark.parametrize(
    ("issuer", "extra", "says"),
    [
        ("mcp-warden", [], "MCP_TOKEN_ISSUER"),
        ("http://auth.example.com", [], "--behind-tls-proxy"),
        ("https://auth.example.com", [], "--certfile"),
        ("https://auth.example.com", ["--certfile", "x.pem"], "together"),
    ],
)
def test_unsafe_or_incomplete_set_ups_are_refused(
    tmp_path: Path, issuer: str, extra: list[str], says: str
) -> None:
    with issuer_lab(tmp_path, MCP_TOKEN_ISSUER=issuer) as lab:
        done = run_cli(serve_args(*extra), lab.env, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert says in lines[0]


def test_a_tls_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    with issuer_lab(tmp_path) as lab:
        lab.pki.key_file.chmod(0o644)
        done = run_cli(
            serve_args("--certfile", str(lab.pki.cert_file), "--keyfile", str(lab.pki.key_file)),
            lab.env,
            timeout=30,
        )
    assert done.returncode == 2
    assert "chmod 600" in done.stderr


def test_no_signing_key_is_refused(tmp_path: Path) -> None:
    with issuer_lab(tmp_path, MCP_TOKEN_ISSUER="http://127.0.0.1:1") as lab:
        env = {**lab.env, "MCP_KEYS_DIR": str(tmp_path / "empty")}
        done = run_cli(serve_args(), env, timeout=30)
    assert done.returncode == 2
    assert "keys new" in done.stderr


def test_behind_a_tls_proxy_it_serves_plain_http_for_the_https_issuer(tmp_path: Path) -> None:
    port = free_port()
    with issuer_lab(tmp_path, MCP_TOKEN_ISSUER="https://auth.example.com") as lab:
        argv = [sys.executable, "-m", "mcp_warden", "issuer", "serve", "--port", str(port)]
        log = tmp_path / "proxy.log"
        with background([*argv, "--behind-tls-proxy"], env=lab.env, log=log) as proc:
            wait_for_line(log, proc, BANNER)
            with httpx.Client(trust_env=False) as http:
                doc = http.get(f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server")
            assert doc.json()["token_endpoint"] == "https://auth.example.com/token"
            assert http_health(port) == 200


def http_health(port: int) -> int:
    with httpx.Client(trust_env=False) as http:
        return http.get(f"http://127.0.0.1:{port}/healthz").status_code
