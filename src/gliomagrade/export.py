"""ONNX export of the fold ensemble in Triton's model-repository layout, parity-checked against PyTorch.

The deployed model is the ensemble of the K fold models as ONE graph:

* ``features`` = the fold feature maps concatenated along channels, ``(N, sum F_i, d, h, w)``;
* ``logits``   = GAP(``features``) @ W.T + b with ``W = [W_1 | ... | W_K] / K`` and ``b = mean b_i``,
  which is exactly the mean of the fold logits, divided by ``temperature`` (calibrated logits).

So the ensemble is still GAP + linear and its CAM is exact from ``features`` and the head written
next to the model (``head.json``): the serving transformer needs no gradients. Layout::

    <out>/<model_name>/config.pbtxt
    <out>/<model_name>/<version>/model.onnx
    <out>/<model_name>/<version>/head.json        # weight (K x F), bias (K), temperature, classes...

Exported with the TorchScript-based ``torch.onnx.export(dynamo=False)`` at a pinned opset, checked
with ``onnx.checker``, then run with onnxruntime against PyTorch eager on random and brain-like
inputs at batch 1 and 2; a difference above ``tolerance`` raises ``ExportError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gliomagrade.errors import GliomaError
from gliomagrade.models import GradingNet

OPSET = 17
"""Pinned ONNX opset (onnxruntime >= 1.14 and Triton's ORT backend support it)."""
INPUT_NAME, LOGITS_NAME, FEATURES_NAME = "image", "logits", "features"
HEAD_FILE, ONNX_FILE, CONFIG_FILE = "head.json", "model.onnx", "config.pbtxt"


class ExportError(GliomaError):
    """The exported graph is invalid or disagrees with PyTorch."""


class EnsembleNet(nn.Module):
    """Fold models as one GAP + linear network over their concatenated feature maps."""

    def __init__(self, models: Sequence[GradingNet], temperature: float = 1.0) -> None:
        super().__init__()
        _check_compatible(models)
        if not temperature > 0:
            raise ExportError(f"temperature must be > 0, got {temperature}")
        self.folds = nn.ModuleList(models)
        weight = torch.cat([m.classifier.weight.detach() for m in models], dim=1) / len(models)
        bias = torch.stack([m.classifier.bias.detach() for m in models]).mean(dim=0)
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight / temperature)
            self.head.bias.copy_(bias / temperature)
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated ensemble logits ``(N, K)`` and concatenated feature maps ``(N, F, d, h, w)``."""
        fmap = torch.cat([m.features(x) for m in self.folds], dim=1)
        return self.head(fmap.flatten(2).mean(dim=2)), fmap

    def reference_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the fold models' own logits / temperature: what the head must reproduce."""
        return torch.stack([m(x) for m in self.folds]).mean(dim=0) / self.temperature


def _check_compatible(models: Sequence[GradingNet]) -> None:
    """All folds must share input channels and classes (their features are concatenated)."""
    if not models:
        raise ExportError("no models to export")
    first = models[0]
    for i, m in enumerate(models):
        if not isinstance(m, GradingNet):
            raise ExportError(f"model {i} is a {type(m).__name__}, expected a GradingNet")
        if (m.in_channels, m.num_classes, m.spatial_dims) != (
            first.in_channels,
            first.num_classes,
            first.spatial_dims,
        ):
            raise ExportError(
                f"fold {i} has in_channels={m.in_channels}, num_classes={m.num_classes}; "
                f"fold 0 has {first.in_channels}, {first.num_classes}"
            )


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it was checked against."""

    model_dir: Path
    onnx_path: Path
    config_path: Path
    head_path: Path
    opset: int
    input_shape: tuple[int, ...]
    feature_shape: tuple[int, ...]
    num_classes: int
    num_folds: int
    max_abs_diff: float
    sha256: str
    checks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def export_onnx(
    models: GradingNet | Sequence[GradingNet],
    out_dir: str | Path,
    *,
    model_name: str,
    version: int = 1,
    input_shape: tuple[int, int, int, int],
    opset: int = OPSET,
    temperature: float = 1.0,
    class_names: Sequence[str] | None = None,
    sequences: Sequence[str] | None = None,
    threshold: float | None = None,
    max_batch_size: int = 8,
    tolerance: float = 1e-4,
    extra_meta: dict[str, Any] | None = None,
) -> ExportResult:
    """Export one model or a fold ensemble to ``<out_dir>/<model_name>/<version>/model.onnx`` (+ config, head)."""
    folds = [models] if isinstance(models, GradingNet) else list(models)
    ensemble = EnsembleNet(folds, temperature).eval()
    if len(input_shape) != folds[0].spatial_dims + 1 or input_shape[0] != folds[0].in_channels:
        raise ExportError(f"input_shape {tuple(input_shape)} must be (C={folds[0].in_channels}, D, H, W)")
    if not str(version).isdigit() or int(version) < 1:
        raise ExportError(f"Triton versions are positive integers, got {version!r}")
    model_dir = Path(out_dir) / model_name
    version_dir = model_dir / str(int(version))
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = version_dir / ONNX_FILE

    _torch_export(ensemble, onnx_path, input_shape, opset)
    checks = _check_graph(onnx_path, opset)
    diff = _check_parity(ensemble, onnx_path, input_shape, tolerance)
    checks.append(f"onnxruntime vs PyTorch eager max |diff| {diff:.2e} <= {tolerance:g}")
    with torch.no_grad():
        logits, fmap = ensemble(torch.zeros(1, *input_shape))
    feature_shape = tuple(fmap.shape[1:])
    num_classes = int(logits.shape[1])

    config_path = model_dir / CONFIG_FILE
    config_path.write_text(triton_config(model_name, input_shape, num_classes, feature_shape, max_batch_size))
    head_path = version_dir / HEAD_FILE
    head = {
        "weight": ensemble.head.weight.detach().tolist(),
        "bias": ensemble.head.bias.detach().tolist(),
        "temperature": ensemble.temperature,
        "temperature_applied": True,
        "class_names": list(class_names) if class_names is not None else None,
        "sequences": list(sequences) if sequences is not None else None,
        "threshold": threshold,
        "input_shape": list(input_shape),
        "feature_shape": list(feature_shape),
        "folds": [m.config() for m in folds],
        "opset": opset,
        **(extra_meta or {}),
    }
    head_path.write_text(json.dumps(head))
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    return ExportResult(
        model_dir,
        onnx_path,
        config_path,
        head_path,
        opset,
        tuple(input_shape),
        feature_shape,
        num_classes,
        len(folds),
        diff,
        digest,
        checks,
    )


def _torch_export(model: nn.Module, path: Path, input_shape: tuple[int, ...], opset: int) -> None:
    """TorchScript-based export in eval mode with a dynamic batch axis."""
    dummy = torch.randn(2, *input_shape)
    dyn = {INPUT_NAME: {0: "N"}, LOGITS_NAME: {0: "N"}, FEATURES_NAME: {0: "N"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # the legacy exporter is deprecated, still supported
        # InstanceNorm without running stats always normalises with the input's statistics: expected
        warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True")
        # shape checks inside torch/MONAI modules trace as constants: right, since only N is dynamic
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[LOGITS_NAME, FEATURES_NAME],
            dynamic_axes=dyn,
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            dynamo=False,
        )


def _check_graph(path: Path, opset: int) -> list[str]:
    """onnx.checker, the I/O contract, the opset, and no norm/dropout left in training mode."""
    import onnx

    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker failed: {exc}") from exc
    got_opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if got_opset != opset:
        raise ExportError(f"{path}: opset {got_opset}, expected {opset}")
    ins = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outs = [o.name for o in proto.graph.output]
    if ins != [INPUT_NAME] or outs != [LOGITS_NAME, FEATURES_NAME]:
        raise ExportError(
            f"{path}: inputs {ins} outputs {outs}, expected [{INPUT_NAME}] [{LOGITS_NAME}, {FEATURES_NAME}]"
        )
    for node in proto.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("BatchNormalization", "Dropout") and attrs.get("training_mode", 0):
            raise ExportError(f"{path}: node {node.name} ({node.op_type}) exported in training mode")
    ops = sorted({n.op_type for n in proto.graph.node})
    return ["onnx.checker.check_model(full_check=True) passed", f"opset {opset}", f"ops: {', '.join(ops)}"]


def parity_inputs(input_shape: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    """Random and brain-like (z-scored ellipsoid, zero background, bright lesion) batches of 1 and 2.

    No constant volume: instance norm of a constant map divides rounding noise by sqrt(eps).
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in input_shape[1:]], indexing="ij"))
    brain = (grid**2 / np.array([0.8, 0.9, 0.7]).reshape(-1, 1, 1, 1) ** 2).sum(0) <= 1
    lesion = ((grid - np.array([0.3, -0.2, 0.1]).reshape(-1, 1, 1, 1)) ** 2).sum(0) <= 0.05
    brainlike = rng.normal(0, 1, input_shape) * brain + 3.0 * lesion
    return [
        rng.normal(0, 1, (1, *input_shape)).astype(np.float32),
        rng.normal(0, 2, (2, *input_shape)).astype(np.float32),
        np.stack([brainlike, np.roll(brainlike, 5, axis=-1)]).astype(np.float32),
    ]


def _check_parity(ensemble: EnsembleNet, path: Path, input_shape: tuple[int, ...], tolerance: float) -> float:
    """Max |onnxruntime - eager| over logits and features; raise ``ExportError`` above ``tolerance``."""
    session = ort_session(path)
    worst = 0.0
    for i, x in enumerate(parity_inputs(input_shape)):
        with torch.no_grad():
            t = torch.from_numpy(x)
            logits, fmap = ensemble(t)
            reference = ensemble.reference_logits(t)
        got_logits, got_fmap = session.run([LOGITS_NAME, FEATURES_NAME], {INPUT_NAME: x})
        diffs = {
            "logits": float(np.abs(got_logits - logits.numpy()).max()),
            "features": float(np.abs(got_fmap - fmap.numpy()).max()),
            "logits vs mean of fold logits": float(np.abs(got_logits - reference.numpy()).max()),
        }
        for what, d in diffs.items():
            if not d <= tolerance:
                raise ExportError(
                    f"{path}: parity input {i} (batch {len(x)}): {what} differ by {d:.3g} > {tolerance:g}"
                )
        worst = max(worst, *diffs.values())
    return worst


def ort_session(path: str | Path, threads: int = 0) -> Any:
    """CPU onnxruntime session; no thread spinning, so it behaves on a shared machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def triton_config(
    model_name: str,
    input_shape: Sequence[int],
    num_classes: int,
    feature_shape: Sequence[int],
    max_batch_size: int = 8,
) -> str:
    """Triton ``config.pbtxt`` for the ONNX Runtime backend (dims without the batch dim; no dynamic batching)."""

    def dims(shape: Sequence[int]) -> str:
        return ", ".join(str(int(s)) for s in shape)

    return (
        f'name: "{model_name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        "input [\n"
        f'  {{ name: "{INPUT_NAME}", data_type: TYPE_FP32, dims: [ {dims(input_shape)} ] }}\n'
        "]\n"
        "output [\n"
        f'  {{ name: "{LOGITS_NAME}", data_type: TYPE_FP32, dims: [ {int(num_classes)} ] }},\n'
        f'  {{ name: "{FEATURES_NAME}", data_type: TYPE_FP32, dims: [ {dims(feature_shape)} ] }}\n'
        "]\n"
    )


def load_head(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read ``head.json``: weight ``(K, F)`` float32, bias ``(K,)`` float32 and the rest of its fields."""
    data = json.loads(Path(path).read_text())
    weight = np.asarray(data.pop("weight"), dtype=np.float32)
    bias = np.asarray(data.pop("bias"), dtype=np.float32)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ExportError(
            f"{path}: head weight {weight.shape} and bias {bias.shape} do not form a (K, F) head"
        )
    return weight, bias, data
