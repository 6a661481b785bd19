"""From a cross-validated run to a registry version: export the fold ensemble, build the manifest.

Decisions (docs/models.md): the deployed model is the ensemble of the K fold models (no refit: no extra
training, and the CV estimate describes the models that ship). Its temperature is fitted on the pooled
out-of-fold logits (held-out for every case), its threshold is the median of the folds' thresholds
(each chosen on that fold's inner validation split), and the ONNX graph emits raw logits: the
transformer applies the manifest's temperature.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomagrade.constants import QC_DRIFT_FEATURES, SEQUENCES
from gliomagrade.errors import InputError

log = logging.getLogger(__name__)

REFERENCE_BINS = 10
PARITY_CASES = 3


def fold_dirs(run_dir: Path) -> list[Path]:
    """The run's finished fold checkpoints, in fold order."""
    dirs = sorted((p for p in (run_dir / "folds").glob("*") if (p / "model.safetensors").is_file()),
                  key=lambda p: int(p.name))
    if not dirs:
        raise InputError("no fold checkpoint (folds/<k>/model.safetensors)", source=str(run_dir))
    return dirs


def ensemble_calibration(run_dir: Path, metas: list[dict[str, Any]]) -> tuple[float, float | None]:
    """(temperature fitted on pooled OOF logits, median fold threshold or None for multiclass)."""
    from gliomagrade.calibration import fit_temperature

    oof = pd.read_csv(run_dir / "oof.csv")
    names = list(metas[0]["class_names"])
    temperature = float(fit_temperature(oof[[f"logit_{c}" for c in names]].to_numpy(), oof["label"].to_numpy()))
    thresholds = [m.get("threshold") for m in metas if m.get("threshold") is not None]
    threshold = float(np.median(thresholds)) if thresholds and len(names) == 2 else None
    return temperature, threshold


def real_inputs(cohort_dir: Path, sequences: list[str], n: int = PARITY_CASES) -> list[np.ndarray]:
    """A few preprocessed cases of the cohort as float32 ``(1, C, D, H, W)`` arrays for parity checks."""
    table = pd.read_csv(cohort_dir / "cohort.csv")
    channels = [SEQUENCES.index(s) for s in sequences]
    out = []
    for rel in table["npz"].head(n):
        with np.load(cohort_dir / rel) as data:
            out.append(data["image"][channels].astype(np.float32)[None])
    return out


def check_real_parity(onnx_path: Path, models: list[Any], inputs: list[np.ndarray], tolerance: float = 1e-4) -> float:
    """Max |onnxruntime - PyTorch| over real cases (logits and features); raises ExportError above tolerance."""
    import torch

    from gliomagrade.export import EnsembleNet, ExportError, ort_session

    session = ort_session(onnx_path)
    ensemble = EnsembleNet(models, 1.0).eval()
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = [t.numpy() for t in ensemble(torch.from_numpy(x))]
        got = session.run(["logits", "features"], {"image": x})
        worst = max(worst, *(float(np.max(np.abs(a - b))) for a, b in zip(got, ref, strict=True)))
    if worst > tolerance:
        raise ExportError(f"{onnx_path}: onnxruntime differs from PyTorch by {worst:.2e} > {tolerance:g} on real cases")
    return worst


def export_run(run_dir: Path, cohort_dir: Path, model_name: str, out_dir: Path) -> dict[str, Any]:
    """Export the run's fold ensemble (raw logits + features) in Triton layout; parity on random and real cases."""
    from gliomagrade.checkpoint import load_checkpoint
    from gliomagrade.export import export_onnx

    loaded = [load_checkpoint(d) for d in fold_dirs(run_dir)]
    models, metas = [m for m, _ in loaded], [meta for _, meta in loaded]
    sequences, grid = list(metas[0]["sequences"]), tuple(metas[0]["grid"])
    temperature, threshold = ensemble_calibration(run_dir, metas)
    result = export_onnx(models, out_dir, model_name=model_name, version=1, input_shape=(len(sequences), *grid),
                         temperature=1.0, class_names=metas[0]["class_names"], sequences=sequences,
                         threshold=threshold)
    real = check_real_parity(result.onnx_path, models, real_inputs(cohort_dir, sequences))
    meta = {"model_name": model_name, "num_folds": result.num_folds, "opset": result.opset,
            "input_shape": list(result.input_shape), "feature_shape": list(result.feature_shape),
            "parity_random_max_abs": result.max_abs_diff, "parity_real_max_abs": real,
            "temperature": temperature, "threshold": threshold, "sha256": result.sha256}
    (Path(out_dir) / "export.json").write_text(json.dumps({**meta, "checks": result.checks}, indent=2))
    log.info("exported %d-fold ensemble, parity random %.1e real %.1e", result.num_folds, result.max_abs_diff, real)
    return meta


def cohort_fingerprint(cohort_dir: Path) -> str:
    """sha256 over the cohort table and every case's preprocessing record (inputs + config hashes)."""
    digest = hashlib.sha256((cohort_dir / "cohort.csv").read_bytes())
    for path in sorted((cohort_dir / "cases").glob("*.json")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def histogram(values: np.ndarray, *, bounds: tuple[float, float] | None = None) -> dict[str, list[float]]:
    """A drift reference: counts over ``REFERENCE_BINS`` bins (fixed [0, 1] for probabilities)."""
    from gliomagrade.drift import ReferenceHistogram

    values = values[np.isfinite(values)]
    lo, hi = bounds or (float(values.min()), float(values.max()))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return ReferenceHistogram.from_values(values, REFERENCE_BINS, (lo, hi)).to_dict()


def references(run_dir: Path, cohort_dir: Path, class_names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drift references (OOF calibrated probabilities, input QC) and the training QC ranges."""
    oof = pd.read_csv(run_dir / "oof.csv")
    refs = {f"prob_{c}": histogram(oof[f"prob_{c}"].to_numpy(float), bounds=(0.0, 1.0)) for c in class_names}
    refs["prob_high"] = refs[f"prob_{class_names[-1]}"]
    cohort = pd.read_csv(cohort_dir / "cohort.csv")
    ranges = {}
    for key in QC_DRIFT_FEATURES:
        if key in cohort:
            values = pd.to_numeric(cohort[key], errors="coerce").to_numpy(float)
            if np.isfinite(values).sum() >= 2:
                refs[key] = histogram(values)
                lo, hi = np.nanpercentile(values, [0.5, 99.5])
                margin = 0.2 * (hi - lo) or 0.2 * abs(hi) or 1.0
                ranges[key] = (float(lo - margin), float(hi + margin))
    return refs, ranges


def metric_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Pooled metrics with CIs in the manifest's shape ``{name: {value, ci_low, ci_high}}``."""
    pooled = metrics["pooled"]
    out: dict[str, Any] = {}
    for key in ("auc", "balanced_accuracy", "sensitivity", "specificity", "f1", "ece", "brier"):
        if key in pooled:
            ci = pooled.get(f"{key}_ci") or (None, None)
            out[key] = {"value": pooled[key], "ci_low": ci[0], "ci_high": ci[1]}
    return out



def preprocess_config(cohort_dir: Path) -> dict[str, Any]:
    """The cohort's preprocessing config, validated: the transformer must rebuild exactly this one."""
    from gliomagrade.config import PreprocessConfig

    record = json.loads((cohort_dir / "preprocess.json").read_text())
    return PreprocessConfig.model_validate(record["config"]).model_dump(mode="json")


def build_manifest(export_dir: Path, run_dir: Path, cohort_dir: Path, decision: dict[str, Any]) -> dict[str, Any]:
    """The caller fields of the registry manifest (registry.ModelManifest) for an exported run."""
    import yaml

    export = json.loads((export_dir / "export.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    preprocess = preprocess_config(cohort_dir)
    class_names = list(metrics["class_names"])
    refs, ranges = references(run_dir, cohort_dir, class_names)
    c, *grid = export["input_shape"]
    f, *fgrid = export["feature_shape"]
    return {
        "class_names": class_names,
        "sequences": list(config["train"]["sequences"]),
        "input": {"name": "image", "dtype": "FP32", "shape": [-1, c, *grid]},
        "outputs": [{"name": "logits", "dtype": "FP32", "shape": [-1, len(class_names)]},
                    {"name": "features", "dtype": "FP32", "shape": [-1, f, *fgrid]}],
        "temperature": export["temperature"],
        "threshold": export["threshold"],
        "head": {"kind": "gap-linear", "in_features": f, "num_classes": len(class_names),
                 "feature_output": "features", "file": f"{export['model_name']}/1/head.json"},
        "metrics": metric_summary(metrics),
        "gate": decision,
        "cohort_fingerprint": cohort_fingerprint(cohort_dir),
        "train": config["train"],
        "preprocess": preprocess,
        "reference": refs,
        "qc_ranges": ranges,
        "extra": {"n_cases": metrics["n"], "task": metrics.get("task"), "export": export,
                  "ensemble": f"{export['num_folds']}-fold mean of logits"},
    }


def publish_release(export_dir: Path, run_dir: Path, cohort_dir: Path, decision_path: Path, registry_uri: str,
                    model_name: str, *, promote: bool) -> tuple[Any, str]:
    """Publish the exported model (+ its metrics) as the next version; promote if asked."""
    from gliomagrade.registry import Registry
    from gliomagrade.store import open_store

    decision = json.loads(decision_path.read_text())
    files = {str(p.relative_to(export_dir)): p for p in sorted(export_dir.rglob("*")) if p.is_file()}
    files["metrics.json"] = run_dir / "metrics.json"  # aggregate only: per-subject predictions stay in the run
    manifest = build_manifest(export_dir, run_dir, cohort_dir, decision)
    registry = Registry(open_store(registry_uri), model_name)
    info = registry.publish(files, manifest)
    lines = [f"# Released {model_name} version {info.version}", "", f"- location: `{info.uri}`"]
    if promote:
        registry.promote(info.version, reason="passed the evaluation gate in the pipeline")
        lines.append(f"- promoted: version {info.version} now serves (`glioma model rollback` reverts)")
    auc = manifest["metrics"].get("auc", {})
    if auc:
        lines.append(f"- pooled OOF AUC {auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]")
    return info, "\n".join(lines) + "\n"
