"""Typed configuration: one ``Profile`` per run, loaded from YAML (``quick``, ``full`` or a file).

Each stage owns one section; unknown keys are errors so a typo in a YAML file never goes unnoticed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gliomagrade.constants import SEQUENCES, parse_sequences
from gliomagrade.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreprocessConfig(_Section):
    """How raw sequences become a ``4 x D x H x W`` tensor in template space (training == serving)."""

    grid: tuple[int, int, int] = (64, 64, 64)
    """Output grid (D, H, W) covering the template brain's bounding box plus ``margin_mm``."""
    margin_mm: float = 8.0
    n4: bool = False
    n4_shrink: int = 4
    coregister: bool = True
    """Rigid mutual-information registration of t1/t2/flair to t1ce."""
    template_transform: Literal["rigid", "affine"] = "affine"
    skull_strip: bool = True
    registration_sampling: float = Field(0.05, gt=0, le=1)
    registration_shrink: tuple[int, ...] = (4, 2)
    fov_tolerance: float = Field(0.25, ge=0)
    """Max relative difference of physical extent between sequences before a case is rejected."""
    seed: int = 0


class TrainConfig(_Section):
    """Cross-validated training of one network on a preprocessed cohort."""

    model: str = "smallcnn"
    task: Literal["binary", "who"] = "binary"
    sequences: tuple[str, ...] = SEQUENCES
    folds: int = Field(5, ge=2)
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    epochs: int = Field(30, ge=1)
    patience: int = Field(8, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    imbalance: Literal["weighted_loss", "balanced_sampler", "none"] = "weighted_loss"
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    channels_last: bool = True
    compile: bool = False
    data_on_device: bool = True
    """Hold the cohort on the GPU and augment there; the DataLoader path is used otherwise."""
    threshold_rule: Literal["youden", "sensitivity"] = "youden"
    target_sensitivity: float = Field(0.9, gt=0, lt=1)
    pretrained: str | None = None
    """Local weight file (MedicalNet 3D ResNet or torchvision 2D ImageNet state dict); never downloaded."""
    seed: int = 0
    num_threads: int = 0
    """torch CPU threads (0: torch's default)."""

    @field_validator("sequences", mode="before")
    @classmethod
    def _seqs(cls, v: Any) -> tuple[str, ...]:
        return parse_sequences(v)


class GateConfig(_Section):
    """Explicit promotion criteria; every one is reported with its value and pass/fail."""

    min_auc_lower_ci: float = 0.75
    min_balanced_accuracy: float = 0.75
    max_ece: float = 0.15
    fold_auc_floor: float = 0.65
    max_regression: float = 0.05
    """Allowed drop in pooled AUC against the currently promoted version."""


class Profile(_Section):
    """A named bundle of stage settings: ``quick`` (CPU demo/tests) or ``full`` (GPU, BraTS-scale)."""

    name: str = "custom"
    preprocess: PreprocessConfig = PreprocessConfig()
    train: TrainConfig = TrainConfig()
    gate: GateConfig = GateConfig()

    def with_overrides(self, **sections: dict[str, Any]) -> Profile:
        """Return a copy with some fields of some sections replaced (validated again)."""
        data = self.model_dump()
        for section, values in sections.items():
            if section not in data:
                raise ConfigError(f"unknown config section {section!r}; expected one of {sorted(data)}")
            data[section].update({k: v for k, v in values.items() if v is not None})
        return _validate(data, f"profile {self.name} with overrides")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


PROFILES = ("quick", "full")


def _validate(data: dict[str, Any], source: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration in {source}:\n{exc}") from exc


def load_profile(name_or_path: str | Path = "quick") -> Profile:
    """Load a built-in profile by name or a YAML file by path."""
    text: str
    if str(name_or_path) in PROFILES:
        text = resources.files("gliomagrade.profiles").joinpath(f"{name_or_path}.yaml").read_text()
        source = f"built-in profile {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"profile {name_or_path!r} is neither one of {PROFILES} nor a YAML file")
        text, source = path.read_text(), str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping, got {type(data).__name__}")
    data.setdefault("name", Path(str(name_or_path)).stem)
    return _validate(data, source)
