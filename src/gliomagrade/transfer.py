"""Transfer learning from LOCAL weight files (never downloaded) into ``GradingNet`` trunks.

Two sources:

* MedicalNet 3D ResNets (``resnet_10.pth`` ...): keys ``module.conv1.weight``..., 1-channel stem,
  5-D kernels. Mapped onto ``features.*`` of our ``resnetN`` (MONAI uses MedicalNet's names).
* torchvision 2D ImageNet ResNet / DenseNet121 state dicts: 4-D kernels inflated to 3-D I3D-style
  (the 2-D kernel repeated along depth and divided by the depth, so a depth-constant volume gives
  the 2-D response; ``inflate="center"`` puts it in the centre slice instead, exact at the borders too).
  torchvision's DenseNet keys (``denselayer1.norm1``) differ from MONAI's (``denselayer1.layers.norm1``):
  ``torchvision_to_monai_key`` is the explicit mapping.

The stem is adapted from the source's 1 or 3 channels to N: the filters are summed over the source
channels and repeated N times divided by N, so an input whose N channels are all equal to ``g`` gives
the response the source net gives to ``g`` (grey) -- activations keep their magnitude.

Heads (``fc``, ``classifier``, MedicalNet's ``conv_seg``) are reported as ignored; the classifier is
trained from scratch. Missing or unexpected trunk keys and shape mismatches raise ``TransferError``
unless ``strict=False``, in which case they are returned in the report (never dropped silently).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gliomagrade.errors import ConfigError
from gliomagrade.models import GradingNet, build_model

log = logging.getLogger(__name__)

Inflate = Literal["mean", "center"]
_STEM = {
    "densenet121": "features.conv0.weight",
    **{f"resnet{d}": "features.conv1.weight" for d in (10, 18, 34, 50)},
}
_HEAD_PREFIXES = ("fc.", "classifier.", "conv_seg.")
_TV_DENSE = re.compile(
    r"^(.*denselayer\d+)\.((?:norm|relu|conv)[12])\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_TV_DENSE_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(weight|bias|running_mean|running_var)$"
)


class TransferError(ConfigError):
    """Pretrained weights do not fit the chosen network."""


@dataclass
class TransferReport:
    """What happened to every key: loaded, adapted (stem/inflated), ignored heads, and problems."""

    source: str
    path: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"{self.path} ({self.source}): {len(self.loaded)} tensors loaded ({len(self.adapted)} adapted), "
            f"{len(self.ignored)} head keys ignored, missing {self.missing[:8]}, unexpected {self.unexpected[:8]}, "
            f"mismatched {self.mismatched[:8]}"
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local ``.safetensors`` or ``.pt/.pth`` file (``weights_only=True``; ``state_dict`` unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"pretrained weights {path} not found (weights are never downloaded)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TransferError(f"{path}: refused or unreadable (only plain tensors are loaded): {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TransferError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return dict(obj)


def detect_source(state: dict[str, torch.Tensor]) -> str:
    """``medicalnet`` (3-D kernels), ``torchvision-resnet`` or ``torchvision-densenet`` (2-D kernels)."""
    keys = [k.removeprefix("module.") for k in state]
    stem = next((k for k in ("conv1.weight", "features.conv0.weight") if k in keys), None)
    if stem is None:
        raise TransferError(
            f"unrecognised state dict: no conv1.weight / features.conv0.weight among {keys[:5]}..."
        )
    ndim = state.get(stem, state.get(f"module.{stem}")).ndim  # type: ignore[union-attr]
    if ndim == 5 and stem == "conv1.weight":
        return "medicalnet"
    if ndim == 4:
        return "torchvision-resnet" if stem == "conv1.weight" else "torchvision-densenet"
    raise TransferError(f"unrecognised state dict: stem {stem} has {ndim}-D kernels")


def torchvision_to_monai_key(key: str) -> str:
    """torchvision DenseNet key -> MONAI DenseNet key (``denselayer1.norm1`` -> ``denselayer1.layers.norm1``)."""
    legacy = _TV_DENSE_LEGACY.match(key)
    if legacy:
        key = f"{legacy.group(1)}{legacy.group(2)}.{legacy.group(3)}"
    m = _TV_DENSE.match(key)
    return f"{m.group(1)}.layers.{m.group(2)}.{m.group(3)}" if m else key


def source_key_to_ours(source: str, key: str) -> str | None:
    """Our ``GradingNet`` key for a source key, or None for a head key (re-initialised)."""
    key = key.removeprefix("module.")
    if key.startswith(_HEAD_PREFIXES):
        return None
    if source == "torchvision-densenet":
        return torchvision_to_monai_key(key)
    return f"features.{key}"


_FRESH = ("classifier.", "features.gate.", "features.tissue.")
"""Our keys no source checkpoint has: the head, and a lesion-gated net's gate and tissue path."""


def _in_model(model: GradingNet, key: str | None) -> str | None:
    """A trunk key as it sits in ``model``: under ``features.trunk.`` when the net is lesion-gated."""
    if key is None or not model.lesion_gated or not key.startswith("features."):
        return key
    return "features.trunk." + key[len("features.") :]


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Sum the filters over the source channels, repeat ``in_channels`` times, divide by ``in_channels``."""
    return (weight.sum(dim=1, keepdim=True) / in_channels).repeat_interleave(in_channels, dim=1)


def inflate_kernel(weight: torch.Tensor, depth: int, mode: Inflate = "mean") -> torch.Tensor:
    """2-D kernel ``(O, I, kh, kw)`` -> 3-D ``(O, I, depth, kh, kw)``: repeated / depth, or centre slice."""
    if mode == "mean":
        return weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
    out = weight.new_zeros(weight.shape[0], weight.shape[1], depth, *weight.shape[2:])
    out[:, :, depth // 2] = weight
    return out


def arch_for_source(name: str, source: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``build_model`` keywords that make a resnet match the checkpoint (shortcut type, downsample bias)."""
    if not name.startswith("resnet"):
        return {}
    keys = {k.removeprefix("module.") for k in state}
    has_conv_shortcut = any(".downsample.0.weight" in k for k in keys)
    has_bias = any(".downsample.0.bias" in k for k in keys)
    return {
        "shortcut_type": "B" if has_conv_shortcut else "A",
        "bias_downsample": has_bias,
        "conv1_t_stride": 2,
    }


def load_pretrained(
    model: GradingNet,
    path_or_state: str | Path | dict[str, torch.Tensor],
    *,
    strict: bool = True,
    inflate: Inflate = "mean",
) -> TransferReport:
    """Load MedicalNet or torchvision weights into ``model``'s trunk (in place); see module docstring."""
    if model.name not in _STEM:
        raise TransferError(f"no pretrained weights exist for {model.name}; use one of {sorted(_STEM)}")
    state = path_or_state if isinstance(path_or_state, dict) else read_state_dict(path_or_state)
    where = "<state dict>" if isinstance(path_or_state, dict) else str(path_or_state)
    source = detect_source(state)
    if source == "torchvision-densenet" and model.name != "densenet121":
        raise TransferError(f"{where} holds DenseNet weights but the model is {model.name}")
    if source != "torchvision-densenet" and model.name == "densenet121":
        raise TransferError(f"{where} holds ResNet weights ({source}) but the model is densenet121")
    report = TransferReport(source=source, path=where)
    target = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = _in_model(model, source_key_to_ours(source, key))
        if ours is None:
            report.ignored.append(key)
            continue
        if ours not in target:
            report.unexpected.append(key)
            continue
        value = _adapt(ours, value, target[ours], model, inflate, report)
        if value.shape != target[ours].shape:
            report.mismatched.append(
                f"{key}: found {tuple(value.shape)}, expected {tuple(target[ours].shape)}"
            )
            continue
        new[ours] = value.to(target[ours].dtype)
        report.loaded.append(ours)
    report.missing = [
        k
        for k in target
        if k not in new and not k.startswith(_FRESH) and not k.endswith("num_batches_tracked")
    ]
    if not report.ok:
        hint = ""
        if model.name.startswith("resnet") and any(
            "downsample" in k for k in report.missing + report.unexpected
        ):
            hint = (
                f"; build the model with {arch_for_source(model.name, source, state)} (see build_pretrained)"
            )
        if strict:
            raise TransferError(report.summary() + hint)
        log.warning("partial transfer: %s%s", report.summary(), hint)
    model.load_state_dict(new, strict=False)
    log.info("transfer: %s", report.summary())
    return report


def _adapt(
    key: str,
    value: torch.Tensor,
    like: torch.Tensor,
    model: GradingNet,
    inflate: Inflate,
    report: TransferReport,
) -> torch.Tensor:
    """Adapt the stem's input channels and inflate 2-D kernels to the target's 3-D shape."""
    adapted = False
    if key == _in_model(model, _STEM[model.name]) and value.shape[1] != model.in_channels:
        value = adapt_stem(value, model.in_channels)
        adapted = True
    if value.ndim == 4 and like.ndim == 5:
        value = inflate_kernel(value, like.shape[2], inflate)
        adapted = True
    if adapted:
        report.adapted.append(key)
    return value


def build_pretrained(
    name: str,
    in_channels: int,
    num_classes: int,
    path: str | Path,
    *,
    strict: bool = True,
    inflate: Inflate = "mean",
    **kw: Any,
) -> tuple[GradingNet, TransferReport]:
    """Build ``name`` with the architecture options the weight file needs, then load it."""
    state = read_state_dict(path)
    arch = {**arch_for_source(name, detect_source(state), state), **kw}
    model = build_model(name, in_channels, num_classes, **arch)
    report = load_pretrained(model, state, strict=strict, inflate=inflate)
    report.path = str(path)
    return model, report
