"""One deployment per test module (keys, store, stub, revocation list) and its server.

A module that needs other settings overrides `lab`; one that needs no
running server never asks for `server`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import Deployment, Served, deployment


@pytest.fixture(scope="module")
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    with deployment(tmp_path_factory.mktemp(name)) as lab:
        yield lab


@pytest.fixture(scope="module")
def server(lab: Deployment) -> Iterator[Served]:
    with lab.serve() as served:
        yield served


@pytest.fixture
def fresh_stub(lab: Deployment) -> None:
    """Each test starts with the stub's counters cleared and no failure queued."""
    lab.stub.reset()
