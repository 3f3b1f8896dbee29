"""The `/metrics` servers in-process: where they listen, what they refuse, what they leave."""

from __future__ import annotations

import os
import socket
import stat

import httpx
import pytest
from prometheus_client import REGISTRY

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError
from mcp_warden.metrics import catalog
from mcp_warden.metrics.endpoint import (
    BANNER,
    MULTIPROC_DIR,
    parent_endpoint,
    prepare_multiprocess_dir,
    process_endpoint,
    serve_registry,
)


def test_the_process_endpoint_serves_this_registry_and_stops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with process_endpoint(Settings(metrics_port=0), public_port=8000) as endpoint:
        assert endpoint is not None
        assert endpoint.url == f"http://127.0.0.1:{endpoint.port}/metrics"
        answer = httpx.get(endpoint.url, trust_env=False, timeout=10)
        assert answer.status_code == 200
        assert [m.name for m in catalog.TOOL_CALLS.describe()] == ["mcp_warden_tool_calls"]
        assert "# TYPE mcp_warden_tool_calls_total counter" in answer.text
    assert capsys.readouterr().err == f"{BANNER}{endpoint.url}\n"
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint.url, trust_env=False, timeout=2)


def test_off_by_default() -> None:
    assert Settings.from_env({}).metrics_port is None
    with process_endpoint(Settings(), public_port=8000) as endpoint:
        assert endpoint is None
    with parent_endpoint(Settings(), public_port=8000) as parent:
        assert parent is None
        assert MULTIPROC_DIR not in os.environ


def test_a_busy_port_is_a_one_line_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            serve_registry("127.0.0.1", port, REGISTRY)
    assert str(raised.value) == (
        f"cannot serve metrics on 127.0.0.1:{port}: Address already in use; choose another "
        "--metrics-port (0 picks a free one) or --metrics-host"
    )


def test_the_public_port_is_refused() -> None:
    with (
        pytest.raises(ConfigError, match="is the public port"),
        process_endpoint(Settings(metrics_port=8000), public_port=8000),
    ):
        pass


def test_each_supervisor_gets_a_fresh_private_directory() -> None:
    environ: dict[str, str] = {}
    first = prepare_multiprocess_dir(environ)
    second = prepare_multiprocess_dir(environ)
    try:
        assert first != second
        assert environ[MULTIPROC_DIR] == str(second)
        for directory in (first, second):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            assert directory.stat().st_uid == os.getuid()
    finally:
        first.rmdir()
        second.rmdir()


@pytest.mark.parametrize("raw", ["http", "-1", "70000"])
def test_a_bad_metrics_port_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="MCP_METRICS_PORT"):
        Settings.from_env({"MCP_METRICS_PORT": raw})
