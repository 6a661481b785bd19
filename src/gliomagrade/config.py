"""Typed configuration: one ``Profile`` per run, loaded from YAML (``quick``, ``full`` or a file).

Each stage owns one section; unknown keys are errors so a typo in a YAML file never goes unnoticed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gliomagrade.constants import GATE_OPTIONS, SEQUENCES, parse_sequences
from gliomagrade.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreprocessConfig(_Section):
    """How raw sequences become a ``4 x D x H x W`` tensor in template space (training == serving)."""

    grid: tuple[int, int, int] = (64, 64, 64)
    """Output grid (D, H, W) covering the template brain's bounding box plus ``margin_mm``."""
    margin_mm: float = Field(8.0, ge=0)
    n4: bool = False
    n4_shrink: int = Field(4, ge=1)
    """N4 runs on the input shrunk by this factor (the bias field is smooth); applied at full resolution."""
    n4_iterations: tuple[int, ...] = (30, 20, 10)
    """N4 iterations per fitting level (one level per entry)."""
    normalise: Literal["zscore", "mode_mad"] = "zscore"
    """Intensity normalisation in the brain: mean/std, or the histogram mode and MAD (lesion-robust)."""
    coregister: bool = True
    """Rigid mutual-information registration of t1/t2/flair to t1ce."""
    template_transform: Literal["rigid", "affine"] = "affine"
    template_mask_dilate_mm: float = Field(4.0, ge=0)
    """The template-registration metric samples the template brain dilated by this much (not the skull)."""
    skull_strip: bool = True
    """True: inputs may carry a skull, the brain is the registered template brain (refined); False: inputs
    are already skull-stripped (BraTS) and the brain is their non-zero region."""
    skull_strip_refine: bool = True
    """Remove voxels dark in every sequence from the template brain's border band."""
    skull_strip_band_mm: float = Field(6.0, gt=0)
    registration_spacing_mm: float = Field(2.0, ge=1)
    """Isotropic spacing of the copies registration works on (the shrink factors are relative to it)."""
    registration_shrink: tuple[int, ...] = (3, 1)
    coregister_shrink: tuple[int, ...] = (3, 1)
    """Pyramid of the co-registrations (same session: they start close, so fewer levels than the template's)."""
    registration_sampling: float = Field(0.02, gt=0, le=1)
    """Fraction of voxels sampled by the metric at the finest level (constant sample count per level)."""
    registration_iterations: int = Field(100, ge=1)
    fov_tolerance: float = Field(0.25, ge=0)
    """Max relative difference of physical extent between sequences before a case is rejected."""
    qc_template_metric_max: float = -0.25
    """Mattes MI (negative, lower is better) above which template registration is flagged suspect."""
    qc_coreg_metric_max: float = -0.15
    qc_scale_range: tuple[float, float] = (0.75, 1.33)
    qc_brain_ml_range: tuple[float, float] = (700.0, 2400.0)
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
    monitor: Literal["val_loss", "val_auc"] = "val_loss"
    """Inner-validation quantity for early stopping and the kept (best) epoch; the loss is less noisy
    than the AUC on small validation sets."""
    min_delta: float = Field(1e-4, ge=0)
    """Smallest improvement of ``monitor`` that resets the patience counter."""
    min_epochs: int = Field(5, ge=1)
    """Epochs trained before one may be kept as best or count towards patience: with a validation split
    of ~10 cases, the untrained network's near-uniform outputs can have the lowest loss (seen: a fold
    that kept epoch 0 and scored AUC 0.30)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Architecture options passed to ``build_model`` (e.g. smallcnn ``channels``, ``norm``)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout before the linear head."""
    feature_l1: float = Field(0.0, ge=0)
    """Weight of an L1 penalty on the last feature maps (sparse, tumour-centred CAMs; 0: off)."""
    sequence_loss: float = Field(0.0, ge=0)
    """Weight of an auxiliary loss on each per-sequence encoder's logit share (smallcnn with
    ``per_sequence`` and two or more sequences; ignored otherwise): every sequence must grade on its
    own, not only the easiest one (0: off)."""
    lesion_loss: float = Field(0.0, ge=0)
    """Weight of the segmentation loss that trains a ``lesion_gate`` model's gate on each feature cell's
    tumour + oedema fraction, or a ``unet``'s oedema / core / enhancing segmentation (needs a segmentation
    for every training case; > 0 exactly when the model is lesion-gated or a unet)."""
    loader_workers: int = Field(0, ge=0)
    """DataLoader worker processes (``data_on_device: false`` path only)."""
    n_boot: int = Field(2000, ge=100)
    """Bootstrap resamples of the CIs computed when a run ends (metrics.json, report)."""

    @field_validator("sequences", mode="before")
    @classmethod
    def _seqs(cls, v: Any) -> tuple[str, ...]:
        return parse_sequences(v)

    @model_validator(mode="after")
    def _gate_needs_loss(self) -> TrainConfig:
        gated = self.model_kwargs.get("lesion_gate") is True
        tissue = self.model_kwargs.get("tissue_width")
        if self.model.lower() == "unet":
            if gated or tissue:
                raise ValueError("model unet segments the lesion itself and grades from it: drop model_kwargs."
                                 "lesion_gate / tissue_width (and --lesion-gate on|tissue)")
            if self.lesion_loss <= 0:
                raise ValueError("model unet needs lesion_loss > 0: its U-Net learns only from the segmentations "
                                 "(not --lesion-gate off)")
            return self
        if tissue and not gated:
            raise ValueError(f"model_kwargs.tissue_width {tissue} needs model_kwargs.lesion_gate: true (the tissue "
                             "path pools under the gate; options that name the gate replace the base profile's)")
        if gated != (self.lesion_loss > 0):
            raise ValueError(
                "model_kwargs.lesion_gate: true needs lesion_loss > 0 (the gate learns only from it)" if gated
                else f"lesion_loss {self.lesion_loss} needs model_kwargs.lesion_gate: true (no gate to train)"
            )
        return self


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
        """Return a copy with some fields of some sections replaced (validated again).

        A new ``train.model`` without its own ``model_kwargs`` drops the profile's: those architecture
        options belong to the profile's network (``--model resnet18`` on the quick profile must work).
        The lesion gate's options (``lesion_gate``, ``tissue_width``) fit every family and stay unless
        the new ``model_kwargs`` name one of them (``lesion_gate: false`` turns the gate off); ``unet``
        takes none of them and trains with the profile's ``lesion_loss`` (1.0 where it has none).
        """
        data = self.model_dump()
        for section, values in sections.items():
            if section not in data:
                raise ConfigError(f"unknown config section {section!r}; expected one of {sorted(data)}")
            new = {k: v for k, v in values.items() if v is not None}
            if section == "train":
                new = _keep_gate(data["train"], new)
            data[section].update(new)
        return _validate(data, f"profile {self.name} with overrides")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


PROFILES = ("quick", "full")


def _keep_gate(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Train overrides with the old lesion-gate options carried into new ``model_kwargs`` that name none
    (a new ``model`` without ``model_kwargs`` gets only those)."""
    gate = {k: v for k, v in old["model_kwargs"].items() if k in GATE_OPTIONS}
    model = str(new.get("model", old["model"])).lower()
    if model != old["model"]:
        new.setdefault("model_kwargs", {})
    if model == "unet":  # it segments the lesion itself; the segmentation loss trains its U-Net
        gate = {}
        if not old["lesion_loss"]:
            new.setdefault("lesion_loss", 1.0)
    if "model_kwargs" in new and not set(GATE_OPTIONS) & set(new["model_kwargs"]):
        new["model_kwargs"] = {**new["model_kwargs"], **gate}
    return new


def _validate(data: dict[str, Any], source: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration in {source}:\n{exc}") from exc


def load_profile(name_or_path: str | Path = "quick") -> Profile:
    """Load a built-in profile by name or a YAML file by path.

    A file with ``base: quick`` (or ``full``, or another file, relative to this one's folder) starts from
    that profile and replaces only the fields it names, so a variant is a few lines instead of a copy.
    """
    return _load(name_or_path, ())


def _load(name_or_path: str | Path, chain: tuple[str, ...]) -> Profile:
    """``load_profile`` with the files already being loaded (``chain``), so a cycle of bases is an error."""
    text: str
    folder: Path | None = None
    if str(name_or_path) in PROFILES:
        text = resources.files("gliomagrade.profiles").joinpath(f"{name_or_path}.yaml").read_text()
        source, key = f"built-in profile {name_or_path!r}", str(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"profile {name_or_path!r} is neither one of {PROFILES} nor a YAML file")
        text, source, key, folder = path.read_text(), str(path), str(path.resolve()), path.parent
    if key in chain:
        raise ConfigError(f"profile bases form a cycle: {' -> '.join((*chain, key))}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping, got {type(data).__name__}")
    data.setdefault("name", Path(str(name_or_path)).stem)
    if "base" in data:
        return _derive(data, source, folder, (*chain, key))
    return _validate(data, source)


def _derive(data: dict[str, Any], source: str, folder: Path | None, chain: tuple[str, ...]) -> Profile:
    """A profile file with ``base:``: that profile with the file's sections applied on top."""
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: base must name another profile (quick, full or a YAML file), got {base!r}")
    sections = {k: v for k, v in data.items() if k != "name"}
    bad = [k for k, v in sections.items() if not isinstance(v, dict)]
    if bad:
        raise ConfigError(f"{source}: sections {bad} must be mappings of fields to values")
    target: str | Path = base if base in PROFILES or folder is None else folder / base
    derived = _load(target, chain).with_overrides(**sections)
    return derived.model_copy(update={"name": data["name"]})
