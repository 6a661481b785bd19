"""The pipeline's steps as plain functions over paths: what each KFP component calls.

No kfp import here: every step is testable (and runnable) without Kubeflow. Paths are the local paths
of KFP artifacts (folders for datasets and models, files for Markdown/HTML/decisions).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from gliomagrade.config import load_profile
from gliomagrade.errors import InputError

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3://", "minio://")


def fetch_cohort(cohort_uri: str, dest: Path) -> Path:
    """A local folder holding the raw cohort: the path itself, or a download of an S3 prefix."""
    if not cohort_uri.startswith(REMOTE_SCHEMES):
        root = Path(cohort_uri)
        if not root.exists():
            raise InputError("raw cohort not found", source=cohort_uri)
        return root
    from gliomagrade.store import open_store

    store = open_store(cohort_uri)
    objects = store.list("")
    if not objects:
        raise InputError("no objects under the cohort prefix", source=cohort_uri)
    for obj in objects:
        store.get_file(obj.key, dest / obj.key)
    log.info("downloaded %d objects of the cohort", len(objects))
    return dest


def run_ingest(cohort_uri: str, layout: str, out_dir: str | Path) -> tuple[int, int]:
    """Discover + validate the raw cohort into ``out_dir/cases.csv``; refuses an empty cohort."""
    from gliomagrade.ingest import discover

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = fetch_cohort(cohort_uri, out / "raw")
    table = discover(root, layout=layout)
    table.write(out)
    for failure in table.failures:
        log.warning("skipped case %s: %s", failure.subject_id, failure.reason)
    if not table.cases:
        raise InputError(f"no valid case found ({len(table.failures)} failed)", source=cohort_uri)
    return len(table.cases), len(table.failures)


def run_preprocess(cases_dir: str | Path, profile: str, workers: int, out_dir: str | Path,
                   qc_markdown: str | Path) -> int:
    """Preprocess every case of the table; writes the QC table as Markdown; refuses an empty result."""
    from gliomagrade.ingest import CaseTable
    from gliomagrade.preprocess import preprocess_cohort

    table = CaseTable.read(Path(cases_dir) / "cases.csv")
    summary = preprocess_cohort(table.cases, out_dir, load_profile(profile).preprocess, workers=workers)
    Path(qc_markdown).write_text(qc_markdown_table(summary))
    n_ok = len(summary.done) + len(summary.skipped)
    if n_ok == 0:
        raise InputError("every case failed preprocessing; see failures.csv", source=str(out_dir))
    return n_ok


def qc_markdown_table(summary: Any) -> str:
    """Preprocessing QC as Markdown: totals, then one row per case (failures with their reason)."""
    keys = ("brain_dice", "template_affine_metric", "brain_volume_ml", "time_total_s")
    lines = [f"# Preprocessing QC: {len(summary.done)} done, {len(summary.skipped)} up to date, "
             f"{len(summary.failed)} failed", "", "| case | status | " + " | ".join(keys) + " | note |",
             "|---|---|" + "---|" * len(keys) + "---|"]
    for r in summary.results:
        cells = [f"{r.qc[k]:.3g}" if isinstance(r.qc.get(k), (int, float)) else "" for k in keys]
        note = r.reason or r.error or ("registration suspect" if r.qc.get("registration_suspect") else "")
        lines.append(f"| {r.subject_id} | {r.status} | " + " | ".join(cells) + f" | {note} |")
    return "\n".join(lines) + "\n"


def run_train(cohort_dir: str | Path, run_dir: str | Path, *, profile: str, task: str, sequences: str,
              model: str, folds: int, epochs: int) -> dict[str, Any]:
    """Cross-validated training with the profile plus the pipeline's overrides (0/'' = profile value)."""
    from gliomagrade.train import train_cv

    prof = load_profile(profile).with_overrides(train={
        "task": task or None, "sequences": sequences or None, "model": model or None,
        "folds": folds or None, "epochs": epochs or None,
    })
    train_cv(cohort_dir, prof, run_dir, progress=False)
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    pooled = metrics["pooled"]
    return {"auc": float(pooled["auc"]), "n": int(metrics["n"]), "task": prof.train.task,
            "model": prof.train.model, "folds": prof.train.folds, "profile": prof.name}


def run_evaluate(run_dir: str | Path, report_html: str | Path, summary_md: str | Path) -> dict[str, Any]:
    """Publish what training computed (metrics with CIs, the report) without touching the run artifact."""
    from gliomagrade.evaluate import metrics_table

    run = Path(run_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    shutil.copyfile(run / "report" / "index.html", report_html)  # self-contained: figures are embedded
    Path(summary_md).write_text(metrics_table(metrics))
    pooled = metrics["pooled"]
    scalars = {k: float(pooled[k]) for k in ("auc", "balanced_accuracy", "sensitivity", "specificity", "f1",
                                             "ece", "brier") if isinstance(pooled.get(k), (int, float))}
    if pooled.get("auc_ci"):
        scalars["auc_ci_low"], scalars["auc_ci_high"] = map(float, pooled["auc_ci"])
    roc = pooled.get("roc") or {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "thresholds": [1.0, 0.0]}
    return {"scalars": scalars, "roc": _finite_roc(roc), "class_names": list(metrics["class_names"]),
            "confusion_matrix": [[int(x) for x in row] for row in pooled["confusion_matrix"]]}


def _finite_roc(roc: dict[str, list[float]]) -> dict[str, list[float]]:
    """KFP's ROC artifact needs finite thresholds (scikit-learn starts at +inf)."""
    thresholds = [min(float(t), 1.0) if t is not None else 1.0 for t in roc["thresholds"]]
    return {"fpr": [float(x) for x in roc["fpr"]], "tpr": [float(x) for x in roc["tpr"]], "thresholds": thresholds}


def promoted_metrics(registry_uri: str, model_name: str) -> dict[str, Any] | None:
    """The promoted version's metrics in ``evaluate_run``'s shape (the gate's baseline), or None."""
    from gliomagrade.registry import Registry
    from gliomagrade.store import open_store

    registry = Registry(open_store(registry_uri), model_name)
    if registry.promoted() is None:
        return None
    manifest = registry.resolve("promoted").manifest
    auc = manifest.metrics.get("auc")
    if auc is None or auc.value is None:
        return None
    return {"task": manifest.train.get("task"), "class_names": list(manifest.class_names),
            "pooled": {"auc": auc.value}}


def run_gate(run_dir: str | Path, registry_uri: str, model_name: str, profile: str,
             thresholds: dict[str, float], decision_path: str | Path, summary_md: str | Path) -> bool:
    """Apply the gate (negative thresholds keep the profile's values) against the promoted baseline."""
    from gliomagrade.gate import evaluate_gate

    overrides = {k: v for k, v in thresholds.items() if v is not None and v >= 0}
    cfg = load_profile(profile).with_overrides(gate=overrides).gate
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    decision = evaluate_gate(metrics, cfg, baseline=promoted_metrics(registry_uri, model_name))
    Path(decision_path).write_text(decision.to_json())
    Path(summary_md).write_text(decision.to_markdown())
    log.info("gate %s", "passed" if decision.passed else "failed: " + "; ".join(decision.reasons))
    return decision.passed


def run_export(run_dir: str | Path, cohort_dir: str | Path, model_name: str, out_dir: str | Path) -> dict[str, Any]:
    """Export the fold ensemble to ONNX (Triton layout) with a parity check on real cohort cases."""
    from gliomagrade.release import export_run

    return export_run(Path(run_dir), Path(cohort_dir), model_name, Path(out_dir))


def run_register(onnx_dir: str | Path, run_dir: str | Path, cohort_dir: str | Path, decision_path: str | Path,
                 registry_uri: str, model_name: str, promote: bool, summary_md: str | Path) -> str:
    """Publish the exported version with its manifest; promote it when asked. Returns the version."""
    from gliomagrade.release import publish_release

    info, text = publish_release(Path(onnx_dir), Path(run_dir), Path(cohort_dir), Path(decision_path),
                                 registry_uri, model_name, promote=promote)
    Path(summary_md).write_text(text)
    return str(info.version)


def run_rejected(decision_path: str | Path, summary_md: str | Path) -> str:
    """Record why the gate refused the model; the run still ends cleanly."""
    decision = json.loads(Path(decision_path).read_text())
    reasons = decision.get("reasons") or ["no reason recorded"]
    text = "# Not released: the evaluation gate failed\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n"
    Path(summary_md).write_text(text)
    return "rejected"
