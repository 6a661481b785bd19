"""The promotion gate: explicit criteria over ``metrics.json`` -> a decision artifact with reasons.

Every criterion is reported with its value, threshold and operator, whether it passed or not. A
missing or NaN metric fails its criterion (a model whose AUC cannot be computed is not promotable).
The regression criterion is skipped, with the reason stated, when there is no promoted baseline or
the baseline is of another task; a skipped criterion does not block promotion.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gliomagrade.config import GateConfig
from gliomagrade.errors import InputError

Op = Literal[">=", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Criterion:
    """One gate check: ``value <op> threshold``."""

    name: str
    value: float | None
    threshold: float
    op: Op
    passed: bool
    detail: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class GateDecision:
    """The decision and every criterion behind it; ``reasons`` lists the failed checks in words."""

    passed: bool
    criteria: list[Criterion]
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN values as null)."""
        return {
            "passed": self.passed,
            "criteria": [{**asdict(c), "value": _finite_or_none(c.value)} for c in self.criteria],
            "reasons": list(self.reasons),
        }

    def to_json(self) -> str:
        """Strict JSON text of ``to_dict()``."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_markdown(self) -> str:
        """A decision line and a table with one row per criterion."""
        head = (
            "**PASSED**: the model may be promoted."
            if self.passed
            else "**REJECTED**: " + "; ".join(self.reasons)
        )
        rows = [
            f"| {c.name} | {_fmt(c.value)} | {c.op} {c.threshold:g} | "
            f"{'skipped' if c.skipped else 'pass' if c.passed else 'FAIL'} | {c.detail} |"
            for c in self.criteria
        ]
        return "\n".join(
            [
                "# Promotion gate",
                "",
                head,
                "",
                "| criterion | value | required | result | detail |",
                "|---|---|---|---|---|",
                *rows,
                "",
            ]
        )

    def write(self, out_dir: str | Path) -> Path:
        """Write ``gate.json`` and ``gate.md`` into ``out_dir``; returns the JSON path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gate.md").write_text(self.to_markdown())
        path = out / "gate.json"
        path.write_text(self.to_json())
        return path


def _finite_or_none(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _fmt(v: float | None) -> str:
    return "n/a" if _finite_or_none(v) is None else f"{v:.3f}"


def _number(v: Any) -> float:
    """A metric as float; None, non-numbers and NaN become NaN (and fail)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _check(name: str, value: Any, threshold: float, op: Op, detail: str = "") -> Criterion:
    """Compare; a NaN value fails with that said in the detail."""
    v = _number(value)
    if math.isnan(v):
        return Criterion(
            name, None, threshold, op, False, (detail + "; " if detail else "") + "metric missing or NaN"
        )
    return Criterion(name, v, threshold, op, bool(_OPS[op](v, threshold)), detail)


def _pooled(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    pooled = metrics.get("pooled")
    if not isinstance(pooled, Mapping):
        raise InputError("metrics have no 'pooled' section (is this a metrics.json from evaluate_run?)")
    return pooled


def _auc_lower_ci(pooled: Mapping[str, Any], cfg: GateConfig) -> Criterion:
    ci = pooled.get("auc_ci") or [None, None]
    detail = f"pooled AUC {_fmt(_number(pooled.get('auc')))}, 95% CI [{_fmt(_number(ci[0]))}, {_fmt(_number(ci[1]))}]"
    return _check("auc_lower_ci", ci[0], cfg.min_auc_lower_ci, ">=", detail)


def _fold_floor(metrics: Mapping[str, Any], cfg: GateConfig) -> Criterion:
    folds = metrics.get("folds") or []
    aucs = {str(f.get("fold", i)): _number(f.get("auc")) for i, f in enumerate(folds)}
    if not aucs:
        return Criterion("fold_auc_floor", None, cfg.fold_auc_floor, ">=", False, "no per-fold metrics")
    bad = [f"fold {k}: {_fmt(v)}" for k, v in aucs.items() if math.isnan(v) or v < cfg.fold_auc_floor]
    worst = min(aucs.values(), key=lambda v: -math.inf if math.isnan(v) else v)
    detail = ("below floor: " + ", ".join(bad)) if bad else f"all {len(aucs)} folds at or above the floor"
    return Criterion("fold_auc_floor", _finite_or_none(worst), cfg.fold_auc_floor, ">=", not bad, detail)


def _regression(metrics: Mapping[str, Any], cfg: GateConfig, baseline: Mapping[str, Any] | None) -> Criterion:
    name, thr = "no_regression", -cfg.max_regression
    if baseline is None:
        return Criterion(
            name, None, thr, ">=", True, "skipped: no promoted version to compare with", skipped=True
        )
    if baseline.get("task") != metrics.get("task") or baseline.get("class_names") != metrics.get(
        "class_names"
    ):
        detail = (
            f"skipped: promoted version is task {baseline.get('task')!r} {baseline.get('class_names')}, "
            f"candidate is {metrics.get('task')!r} {metrics.get('class_names')}"
        )
        return Criterion(name, None, thr, ">=", True, detail, skipped=True)
    new, old = _number(_pooled(metrics).get("auc")), _number(_pooled(baseline).get("auc"))
    delta = new - old
    return _check(
        name,
        delta,
        thr,
        ">=",
        f"pooled AUC {_fmt(new)} vs promoted {_fmt(old)} (delta = candidate - promoted)",
    )


def evaluate_gate(
    metrics: Mapping[str, Any], cfg: GateConfig, *, baseline: Mapping[str, Any] | None = None
) -> GateDecision:
    """Apply the gate to an ``evaluate_run`` result; ``baseline`` is the promoted version's metrics."""
    pooled = _pooled(metrics)
    criteria = [
        _auc_lower_ci(pooled, cfg),
        _check(
            "balanced_accuracy",
            pooled.get("balanced_accuracy"),
            cfg.min_balanced_accuracy,
            ">=",
            "pooled out-of-fold, each fold at its own validation threshold",
        ),
        _check("ece", pooled.get("ece"), cfg.max_ece, "<=", "pooled, calibrated probabilities, top-label"),
        _fold_floor(metrics, cfg),
        _regression(metrics, cfg, baseline),
    ]
    reasons = [
        f"{c.name} = {_fmt(c.value)} fails {c.op} {c.threshold:g}" + (f" ({c.detail})" if c.detail else "")
        for c in criteria
        if not c.passed
    ]
    return GateDecision(passed=not reasons, criteria=criteria, reasons=reasons)


def gate_run(
    run_dir: str | Path, cfg: GateConfig, *, baseline_metrics: str | Path | None = None
) -> GateDecision:
    """Read ``RUN/metrics.json`` (and a baseline metrics file), decide, and write ``RUN/gate.{json,md}``."""
    run = Path(run_dir)
    metrics = _read_json(run / "metrics.json")
    baseline = _read_json(Path(baseline_metrics)) if baseline_metrics else None
    decision = evaluate_gate(metrics, cfg, baseline=baseline)
    decision.write(run)
    return decision


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError("metrics file not found", source=str(path))
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", source=str(path)) from exc
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, found {type(data).__name__}", source=str(path))
    return data
