"""Cluster checks run offline: the venv's bin (helm, kubectl installed from the wheel) goes on PATH."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def _load(path: Path, name: str):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_root_conftest = _load(ROOT / "tests" / "conftest.py", "gliomagrade_tests_root_conftest")
require_tool: Callable[[str, str], None] = _root_conftest.require_tool


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def _tool(name: str, why: str) -> str:
    """Path of ``name``; helm/kubectl are first installed from the aws-cdk wheel when missing."""
    if name in ("helm", "kubectl") and not shutil.which(name):
        installer = _load(ROOT / "scripts" / "install_k8s_tools.py", "gliomagrade_install_k8s_tools")
        try:
            installer.install(VENV_BIN, (name,))
        except SystemExit as exc:  # the wheel is not installed: require_tool skips or fails below
            print(f"cannot install {name}: {exc}", file=sys.stderr)
    require_tool(name, why)
    found = shutil.which(name)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("helm", "helm lint / helm template of charts/gliomagrade-serving")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool("kubectl", "kubectl kustomize manifests/")


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool", "promtool check rules (Debian package prometheus)")


@pytest.fixture(scope="session")
def shellcheck() -> str:
    return _tool("shellcheck", "lint of scripts/*.sh")


@pytest.fixture(scope="session")
def registry_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local registry with one promoted version of a tiny ONNX model (the serving tests' helper)."""
    sys.path.insert(0, str(ROOT / "tests" / "serving"))
    import serving_fixtures

    work = tmp_path_factory.mktemp("registry")
    return serving_fixtures.publish_version(work / "store", work / "export")
