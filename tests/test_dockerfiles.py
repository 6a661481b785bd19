"""The images are built where a Docker engine exists; here they are checked statically with Docker's own
parser (the `dockerfile` package wraps moby/buildkit's Go parser)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import dockerfile
import pytest

from gliomagrade import __version__
from gliomagrade.components import DEFAULT_IMAGE
from gliomagrade.deploy import SERVING_IMAGE

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def _commands(path: Path) -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(path)))


def _args(cmds: list[dockerfile.Command]) -> dict[str, str]:
    return dict(c.value[0].split("=", 1) for c in cmds if c.cmd == "ARG" and "=" in c.value[0])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_pinned_and_user_is_not_root(path: Path) -> None:
    cmds = _commands(path)
    base = next(c.value[0] for c in cmds if c.cmd == "FROM")
    base = re.sub(r"\$\{(\w+)\}", lambda m: _args(cmds)[m.group(1)], base)
    assert ":" in base and not base.endswith(":latest") and re.search(r":\d", base), base
    users = [c.value[0] for c in cmds if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path.name} must end as a non-root user"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_torch_is_pinned_before_the_project(path: Path) -> None:
    runs = [c.original for c in _commands(path) if c.cmd == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "torch==" in r)
    project_at = next(i for i, r in enumerate(runs) if re.search(r"pip install (\.|'\.)", r))
    assert torch_at < project_at, "torch must be installed (pinned) before the project, or pip pulls another build"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copied_sources_exist(path: Path) -> None:
    for c in _commands(path):
        if c.cmd == "COPY":
            for src in c.value[:-1]:
                assert (ROOT / src).exists(), f"{path.name} copies {src}, which is not in the repository"


def test_entrypoint_module_exists_and_tags_match_the_version() -> None:
    serving = _commands(ROOT / "docker" / "serving.Dockerfile")
    entry = next(c.value for c in serving if c.cmd == "ENTRYPOINT")
    assert entry[:2] == ("python", "-m") and importlib.util.find_spec(entry[2]) is not None
    assert DEFAULT_IMAGE.endswith(f":{__version__}") and SERVING_IMAGE.endswith(f":{__version__}")
