"""One real stub process per test module; every test starts from a clean stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mcp_warden.config import ScavioProfile
from mcp_warden.demo.harness import Stub, stub_process
from mcp_warden.server.tools.scavio import ScavioClient
from tests.support.stub import new_api_key
from tests.tools.fakes import Sleeps


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api_key() -> str:
    return new_api_key()


@pytest.fixture(scope="module")
def stub_server(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[Stub]:
    with stub_process(tmp_path_factory.mktemp("stub"), [api_key]) as stub:
        yield stub


@pytest.fixture
def stub(stub_server: Stub, api_key: str) -> Stub:
    stub_server.set_keys(api_key)
    stub_server.reset()
    return stub_server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(stub: Stub, api_key: str, sleeps: Sleeps) -> Callable[..., ScavioClient]:
    """ScavioClient against the stub; build it inside the test's event loop."""

    def make(
        profile: ScavioProfile = "scavio-v2",
        load_key: Callable[[], str] | None = None,
        **options: Any,
    ) -> ScavioClient:
        options.setdefault("sleep", sleeps)
        return ScavioClient(
            base_url=stub.url,
            profile=profile,
            load_key=load_key or (lambda: api_key),
            **options,
        )

    return make
