"""A tiny raw cohort and a tiny profile shared by the pipeline tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gliomagrade.config import load_profile

N_CASES = 20


def tiny_profile_yaml(path: Path) -> Path:
    """The quick profile shrunk: 24^3 grid, registration on 4 mm copies, a 3-stage smallcnn, few epochs."""
    prof = load_profile("quick").with_overrides(
        preprocess={"grid": (24, 24, 24), "registration_spacing_mm": 4.0, "registration_shrink": (2, 1),
                    "coregister_shrink": (1,)},
        train={"folds": 2, "epochs": 4, "patience": 4, "batch_size": 4, "lr": 5e-3, "val_fraction": 0.34,
               "num_threads": 1, "n_boot": 200, "model_kwargs": {"channels": [8, 16, 32], "strides": [2, 2, 1]}},
    )
    data = prof.model_dump(mode="json")
    data["name"] = "tiny"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def raw_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gliomagrade.synth.cohort import write_cohort
    from gliomagrade.synth.params import SynthParams

    out = tmp_path_factory.mktemp("raw")
    return write_cohort(out, n=N_CASES, seed=3, layout="brats2020", workers=2,
                        params=SynthParams(resolution=4.0, difficulty=0.0, hgg_fraction=0.5, skull_prob=0.0),
                        progress=False)


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_profile_yaml(tmp_path_factory.mktemp("profile") / "tiny.yaml")
