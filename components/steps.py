"""KFP v2 lightweight components: one thin adapter per pipeline step over the domain code.

Each function body imports what it needs (KFP ships the source of the function alone into the
container); the real work happens in ``gliomagrade.*`` modules that are tested without KFP.
The functions are wrapped into components by :func:`gliomagrade.components.make_components` so the
image can be chosen when the pipeline is compiled.
(No ``from __future__ import annotations`` here: KFP reads the annotations as types.)
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def ingest(
    cohort_uri: str, layout: str, cases: Output[Dataset]
) -> NamedTuple("IngestOutputs", [("n_cases", int), ("n_failed", int)]):
    """Discover and validate the raw cohort; a case table with every failure and its reason."""
    from collections import namedtuple

    from gliomagrade.pipeline_steps import run_ingest

    n_ok, n_failed = run_ingest(cohort_uri, layout, cases.path)
    cases.metadata.update({"n_cases": n_ok, "n_failed": n_failed, "source": cohort_uri.split("?")[0]})
    return namedtuple("IngestOutputs", ["n_cases", "n_failed"])(n_ok, n_failed)


def preprocess(cases: Input[Dataset], profile: str, workers: int, cohort: Output[Dataset], qc: Output[Markdown]) -> int:
    """Preprocess every case onto the template grid (the same code the transformer runs)."""
    from gliomagrade.pipeline_steps import run_preprocess

    n_ok = run_preprocess(cases.path, profile, workers, cohort.path, qc.path)
    cohort.metadata.update({"n_cases": n_ok, "profile": profile})
    return n_ok


def train(
    cohort: Input[Dataset], profile: str, task: str, sequences: str, model_name: str, folds: int, epochs: int,
    run: Output[Model],
) -> float:
    """Patient-level cross-validated training; returns the pooled out-of-fold AUC."""
    from gliomagrade.pipeline_steps import run_train

    summary = run_train(cohort.path, run.path, profile=profile, task=task, sequences=sequences,
                        model=model_name, folds=folds, epochs=epochs)
    run.metadata.update(summary)
    return float(summary["auc"])


def evaluate(
    run: Input[Model], metrics: Output[Metrics], roc: Output[ClassificationMetrics], report: Output[HTML],
    summary: Output[Markdown],
) -> None:
    """Metrics with CIs, ROC/confusion matrix for the KFP UI, and the HTML report."""
    from gliomagrade.pipeline_steps import run_evaluate

    result = run_evaluate(run.path, report.path, summary.path)
    for key, value in result["scalars"].items():
        metrics.log_metric(key, value)
    roc.log_roc_curve(result["roc"]["fpr"], result["roc"]["tpr"], result["roc"]["thresholds"])
    roc.log_confusion_matrix(result["class_names"], result["confusion_matrix"])


def gate(
    run: Input[Model], registry_uri: str, model_name: str, profile: str, min_auc_lower_ci: float,
    min_balanced_accuracy: float, max_ece: float, fold_auc_floor: float, max_regression: float,
    decision: Output[Artifact], summary: Output[Markdown],
) -> bool:
    """Apply the promotion criteria (negative threshold = the profile's value); True when all pass."""
    from gliomagrade.pipeline_steps import run_gate

    thresholds = {"min_auc_lower_ci": min_auc_lower_ci, "min_balanced_accuracy": min_balanced_accuracy,
                  "max_ece": max_ece, "fold_auc_floor": fold_auc_floor, "max_regression": max_regression}
    passed = run_gate(run.path, registry_uri, model_name, profile, thresholds, decision.path, summary.path)
    decision.metadata["passed"] = passed
    return passed


def export(run: Input[Model], cohort: Input[Dataset], model_name: str, onnx_model: Output[Model]) -> None:
    """ONNX export of the fold ensemble (logits + feature maps), parity-checked, Triton layout."""
    from gliomagrade.pipeline_steps import run_export

    onnx_model.metadata.update(run_export(run.path, cohort.path, model_name, onnx_model.path))


def register(
    onnx_model: Input[Model], run: Input[Model], cohort: Input[Dataset], decision: Input[Artifact],
    registry_uri: str, model_name: str, promote: bool, summary: Output[Markdown],
) -> str:
    """Publish the version atomically (checksummed manifest last) and promote it if asked."""
    from gliomagrade.pipeline_steps import run_register

    return run_register(onnx_model.path, run.path, cohort.path, decision.path, registry_uri, model_name,
                        promote, summary.path)


def rejected(decision: Input[Artifact], summary: Output[Markdown]) -> str:
    """The gate said no: write why, and end the run cleanly."""
    from gliomagrade.pipeline_steps import run_rejected

    return run_rejected(decision.path, summary.path)


def deploy(
    registry_uri: str, model_name: str, version: str, namespace: str, service_name: str, canary_percent: int,
) -> str:
    """Create or patch the KServe InferenceService to serve ``version`` (cluster only)."""
    from gliomagrade.deploy import deploy_version

    return deploy_version(registry_uri, model_name, version, namespace=namespace, service_name=service_name,
                          canary_percent=canary_percent)
