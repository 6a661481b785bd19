"""Fixtures for the store/registry tests: a real S3-protocol server (moto_server) as a child process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gliomagrade.store import LocalStore, Store

from .s3server import MotoServer, unused_port


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto_server shared by the round-trip tests (each test gets its own bucket)."""
    server = MotoServer(unused_port(), tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_moto(port: int, tmp_path: Path) -> Iterator[MotoServer]:
    """A moto_server that the test may kill and restart on the same port."""
    server = MotoServer(port, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests over both backends: a LocalStore and an S3Store on moto."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("moto").store()
