"""The stub upstream for the tools tests: in-process by default, a real process where
a socket matters. Every test starts from a clean stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_warden.config import ScavioProfile
from mcp_warden.demo.harness import Stub, stub_process, write_keys
from mcp_warden.scavio.client import ScavioClient
from tests.support.stub import new_api_key
from tests.tools.fakes import Sleeps
from tests.tools.inprocess import InProcessStub

ClientFactory = Callable[..., ScavioClient]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api_key() -> str:
    return new_api_key()


@pytest.fixture
def stub(tmp_path: Path, api_key: str) -> Iterator[InProcessStub]:
    """The stub app in this process (`make_client` reaches it through its transport)."""
    keys_file = tmp_path / "stub-keys"
    write_keys(keys_file, [api_key])
    in_process = InProcessStub(keys_file)
    try:
        yield in_process
    finally:
        in_process.close()


@pytest.fixture(scope="module")
def stub_server(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[Stub]:
    with stub_process(tmp_path_factory.mktemp("stub"), [api_key]) as process:
        yield process


@pytest.fixture
def live_stub(stub_server: Stub, api_key: str) -> Stub:
    """The real stub process, for socket-level cases: timeouts, connection reuse."""
    stub_server.set_keys(api_key)
    stub_server.reset()
    return stub_server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(stub: InProcessStub, api_key: str, sleeps: Sleeps) -> ClientFactory:
    """ScavioClient against the in-process stub; build it inside the test's event loop."""
    return _factory(stub.url, stub.transport, api_key, sleeps)


@pytest.fixture
def make_live_client(live_stub: Stub, api_key: str, sleeps: Sleeps) -> ClientFactory:
    """ScavioClient against the stub process over a real socket."""
    return _factory(live_stub.url, lambda: None, api_key, sleeps)


def _factory(
    url: str,
    transport: Callable[[], httpx.AsyncBaseTransport | None],
    api_key: str,
    sleeps: Sleeps,
) -> ClientFactory:
    def make(
        profile: ScavioProfile = "scavio-v2",
        load_key: Callable[[], str] | None = None,
        **options: Any,
    ) -> ScavioClient:
        options.setdefault("sleep", sleeps)
        return ScavioClient(
            base_url=url,
            profile=profile,
            load_key=load_key or (lambda: api_key),
            transport=transport(),
            **options,
        )

    return make
