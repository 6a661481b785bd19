"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import socket

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


def require_tool(name: str, why: str) -> None:
    """Skip when an external binary is missing, but fail in CI (GLIOMA_REQUIRE_TOOLS=1)."""
    import shutil

    if shutil.which(name):
        return
    if os.environ.get("GLIOMA_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{name} is required in CI ({why}) but is not on PATH")
    pytest.skip(f"{name} not installed ({why})")
