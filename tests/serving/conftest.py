"""Serving fixtures: a small phantom case on disk, a real registry version, ``glioma serve`` for the session."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_fixtures import Server, Stack, phantom_images, publish_version, start_stack, write_case

from gliomagrade.constants import SEQUENCES


@pytest.fixture(scope="session")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("case")
    write_case(phantom_images(), folder)
    return folder


@pytest.fixture(scope="session")
def case_bytes(case_dir: Path) -> dict[str, bytes]:
    return {s: (case_dir / f"{s}.nii.gz").read_bytes() for s in SEQUENCES}


@pytest.fixture(scope="session")
def case_b64(case_bytes: dict[str, bytes]) -> dict[str, str]:
    return {s: base64.b64encode(data).decode() for s, data in case_bytes.items()}


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("registry")
    return publish_version(root / "store", root / "export")


@pytest.fixture(scope="session")
def stack(store_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``glioma serve`` for the whole session; teardown checks that SIGTERM stops both servers cleanly."""
    running = start_stack(store_uri, tmp_path_factory.mktemp("serve-logs"))
    yield running
    running.proc.send_signal(signal.SIGTERM)
    try:
        code = running.proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(running.proc.pid, signal.SIGKILL)
        for server in (running.transformer, running.predictor):
            if server.proc.poll() is None:
                os.killpg(server.proc.pid, signal.SIGKILL)
        raise
    alive = [name for name, s in (("transformer", running.transformer), ("predictor", running.predictor))
             if s.proc.poll() is None]
    for _name, server in (("transformer", running.transformer), ("predictor", running.predictor)):
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
    assert code == 0 and not alive, f"glioma serve exited {code}; still alive: {alive}"


@pytest.fixture(scope="session")
def predictor(stack: Stack) -> Server:
    return stack.predictor


@pytest.fixture(scope="session")
def transformer(stack: Stack) -> Server:
    return stack.transformer
