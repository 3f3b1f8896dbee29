"""Fixtures for token tests: a TokenLab and real http/https servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http_server import RecordingServer, serving
from tests.support.tls import TestPki, make_pki
from tests.support.tokens import TokenLab


@pytest.fixture
def lab(tmp_path: Path) -> TokenLab:
    return TokenLab(tmp_path / "keys")


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingServer]:
    """Plain http, 404 for everything: the place hostile header URLs point at."""
    with serving(RecordingServer(status=404)) as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def jwks_server(pki: TestPki) -> Iterator[RecordingServer]:
    """https with a certificate from the test CA, serving `body` at /jwks.json."""
    with serving(RecordingServer(pki)) as server:
        yield server
