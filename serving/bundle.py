"""A servable model version on local disk: the Triton ONNX repository, the linear head and the manifest.

Layout (what ``Registry.download`` writes and what Triton serves in the cluster)::

    <dir>/manifest.json                      class names, temperature, threshold, input spec, preprocessing,
                                             reference distributions for drift, QC ranges
    <dir>/head.json | head.safetensors       linear head: weight (K x F), bias (K) -> exact CAM
    <dir>/<model>/config.pbtxt               Triton model configuration
    <dir>/<model>/<n>/model.onnx             input ``image`` [N,C,D,H,W]; outputs ``logits``, ``features``

``fetch_bundle`` resolves a registry URI (local store path or ``s3://``) through ``gliomagrade.registry``
(which verifies sha256 checksums on download); a plain bundle directory is used as is and its files are
checked against ``manifest["sha256"]`` when the manifest lists them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import StoreError
from gliomagrade.registry import ModelManifest, Registry
from gliomagrade.store import open_store, sha256_file

log = logging.getLogger(__name__)
INPUT_NAME, LOGITS_NAME, FEATURES_NAME = "image", "logits", "features"


class ServingManifest(BaseModel):
    """The serving view of a registry ``ModelManifest`` (``from_registry`` derives it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    version: str
    class_names: tuple[str, ...]
    sequences: tuple[str, ...] = SEQUENCES
    """Input channels in order (a subset of ``SEQUENCES``): the transformer picks them from preprocess_case."""
    head_file: str | None = None
    """Head path inside the version (``head.file``); searched for when absent."""
    temperature: float = Field(1.0, gt=0)
    threshold: float | None = Field(None, ge=0, le=1)
    """Decision threshold on the high-grade probability (binary models); argmax when None."""
    review_confidence: float = Field(0.7, ge=0, le=1)
    """Below this top-class probability a prediction is flagged for review (``extra.review_confidence``)."""
    input_shape: tuple[int, int, int, int]
    """(C, D, H, W) of the ``image`` tensor (``input.shape[1:]``)."""
    preprocess: dict[str, Any] = Field(default_factory=dict)
    """``PreprocessConfig`` of the training run: the transformer preprocesses with exactly this."""
    reference: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    """Drift references ``{feature: {"edges", "counts"}}``: ``prob_<class>``/``prob_high`` or a QC statistic."""
    qc_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Training range of input QC statistics; a served case outside it is flagged for review."""
    sha256: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_registry(cls, manifest: ModelManifest) -> ServingManifest:
        """Derive the serving fields from the registry manifest, validating the tensor spec."""
        shape = list(manifest.input.shape)
        if manifest.input.name != INPUT_NAME or len(shape) != 5 or any(d < 1 for d in shape[1:]):
            raise StoreError(f"manifest input is {manifest.input.name!r} {shape}, expected {INPUT_NAME!r} "
                             "[N, C, D, H, W] with fixed C, D, H, W")
        return cls(
            model_name=manifest.model_name, version=str(manifest.version), class_names=tuple(manifest.class_names),
            sequences=tuple(manifest.sequences), head_file=getattr(manifest.head, "file", None) if manifest.head else None,
            temperature=manifest.temperature, threshold=manifest.threshold,
            review_confidence=manifest.extra.get("review_confidence", 0.7), input_shape=tuple(shape[1:]),
            preprocess=dict(manifest.preprocess),
            reference={k: {"edges": list(h.edges), "counts": list(h.counts)} for k, h in manifest.reference.items()},
            qc_ranges=dict(manifest.qc_ranges),
            sha256={rel: entry.sha256 for rel, entry in manifest.files.items()},
        )


@dataclass(frozen=True)
class ModelBundle:
    """Everything one model version needs at serving time."""

    root: Path
    manifest: ServingManifest
    onnx_path: Path
    head_weight: np.ndarray
    head_bias: np.ndarray

    @property
    def name(self) -> str:
        return self.manifest.model_name

    @property
    def version(self) -> str:
        return self.manifest.version


def _find_onnx(root: Path, model_name: str) -> Path:
    """``root/<model>/<n>/model.onnx`` (highest n; Triton layout), else the one model.onnx in the bundle."""
    model_dir = root / model_name
    found = sorted((p for p in model_dir.glob("*/model.onnx") if p.parent.name.isdigit()),
                   key=lambda p: int(p.parent.name))
    if found:
        return found[-1]
    anywhere = sorted(root.rglob("model.onnx"))
    if len(anywhere) != 1:
        raise StoreError(f"expected {model_name}/<version>/model.onnx (Triton layout) or exactly one model.onnx "
                         f"under {root}, found {len(anywhere)}")
    return anywhere[0]


def _load_head(root: Path, manifest: ServingManifest, onnx_path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Linear head (weight K x F, bias K) and the temperature already folded into the graph's logits.

    Looked up at ``head.file`` from the manifest, else next to model.onnx, in ``<model>/`` or the root.
    """
    classes = len(manifest.class_names)
    folders = (onnx_path.parent, root / manifest.model_name, root)
    candidates = [root / manifest.head_file] if manifest.head_file else [
        f / name for f in folders for name in ("head.safetensors", "head.json")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise StoreError(f"no linear head for CAM in {root} (looked for {[str(p.relative_to(root)) for p in candidates]})")
    applied = 1.0
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        weight, bias = tensors["weight"], tensors["bias"]
    else:
        data = json.loads(path.read_text())
        weight, bias = np.asarray(data["weight"]), np.asarray(data["bias"])
        if data.get("temperature_applied"):
            applied = float(data.get("temperature", 1.0))
    weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    if weight.ndim != 2 or weight.shape[0] != classes or bias.shape != (classes,):
        raise StoreError(f"{path.name}: weight {weight.shape} and bias {bias.shape}, expected ({classes}, F) and "
                         f"({classes},) for {classes} classes")
    return weight, bias, applied


def verify_checksums(root: Path, expected: dict[str, str]) -> None:
    """Compare each listed file's sha256 with the manifest; raise StoreError naming the first mismatch."""
    for rel, digest in expected.items():
        path = root / rel
        if not path.is_file():
            raise StoreError(f"{rel} is listed in the manifest but missing under {root}")
        found = sha256_file(path)
        if found != digest:
            raise StoreError(f"checksum mismatch for {rel}: found {found[:12]}..., expected {digest[:12]}...")


def load_bundle(root: str | Path) -> ModelBundle:
    """Read and validate a bundle directory; raises StoreError naming what is missing or wrong."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise StoreError(f"{manifest_path} not found")
    try:
        manifest = ServingManifest.from_registry(ModelManifest.model_validate_json(manifest_path.read_bytes()))
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{manifest_path}: invalid manifest: {exc}") from exc
    verify_checksums(root, manifest.sha256)
    onnx_path = _find_onnx(root, manifest.model_name)
    weight, bias, applied = _load_head(root, manifest, onnx_path)
    if applied != 1.0:  # the graph already divides by `applied`; calibrate the rest of the way
        manifest = manifest.model_copy(update={"temperature": manifest.temperature / applied})
    return ModelBundle(root, manifest, onnx_path, weight, bias)


def resolve_version(source: str, model_name: str, version: str) -> str:
    """Pin ``promoted``/``latest`` to a version number once, so both servers load the same version
    even if a promotion or rollback happens while they start; a bundle directory is returned as is."""
    path = Path(source)
    if str(version).isdigit() or ("://" not in source and (path / "manifest.json").is_file()):
        return str(version)
    return str(Registry(open_store(source), model_name).resolve(version).version)


def fetch_bundle(source: str, model_name: str, version: str, cache_dir: Path) -> Path:
    """A local bundle directory for ``source``: a bundle dir as is, or a registry version downloaded."""
    path = Path(source)
    if "://" not in source and (path / "manifest.json").is_file():
        return path
    if "://" not in source and not (path / model_name).is_dir():
        raise StoreError(f"{source}: neither a model version directory (no manifest.json) nor a registry store "
                         f"holding model {model_name!r} (no {model_name}/)")
    registry = Registry(open_store(source), model_name)
    info = registry.resolve(version)
    dest = cache_dir / model_name / str(info.version)
    registry.download(info.version, dest)
    log.info("downloaded %s version %s from %s", model_name, info.version, registry.store.uri)
    return dest
