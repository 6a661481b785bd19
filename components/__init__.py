"""gliomagrade.components: the KFP v2 components, thin adapters over the domain code.

Components are lightweight Python components whose base image is the project's own image
(``install_kfp_package=False``): ``kfp.local.SubprocessRunner`` runs them in this environment and
the compiler emits them for the cluster unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from gliomagrade.components import steps

DEFAULT_IMAGE = "ghcr.io/gliomagrade/gliomagrade:0.1.0"
"""The components image (Dockerfile at the repository root); ``--image`` overrides it at compile time."""

STEP_NAMES = ("ingest", "preprocess", "train", "evaluate", "gate", "export", "register", "rejected", "deploy")


@dataclass(frozen=True)
class Components:
    """The pipeline's components, built for one image."""

    image: str
    ops: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.ops[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def make_components(image: str = DEFAULT_IMAGE) -> Components:
    """Wrap every step function into a KFP component running in ``image``."""
    ops = {
        name: dsl.component(getattr(steps, name), base_image=image, install_kfp_package=False)
        for name in STEP_NAMES
    }
    return Components(image=image, ops=ops)
