"""Alert rules and the Grafana dashboard: promtool, and every query against the metrics the servers export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .promql import EXTERNAL, TARGET_LABELS, exported_series, grouping_labels, selectors

ROOT = Path(__file__).resolve().parents[2]
RULES = yaml.safe_load((ROOT / "manifests" / "prometheus-rules.yaml").read_text())
DASHBOARD = json.loads((ROOT / "manifests" / "grafana-dashboard.json").read_text())
REQUIRED_ALERTS = {"GliomagradePredictionDrift", "GliomagradeInputDrift", "GliomagradeHighLatencyP95",
                   "GliomagradeHighErrorRate", "GliomagradePredictorUnavailable", "GliomagradeNoTraffic"}


def rule_exprs() -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], r["expr"]) for g in RULES["spec"]["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def check_expr(where: str, expr: str, series: dict[str, set[str]]) -> list[str]:
    """Unknown metric names and label names of one expression, as messages naming ``where``."""
    problems = []
    known = {**series, **EXTERNAL}
    available = set(TARGET_LABELS)
    for name, labels in selectors(expr):
        if name not in known:
            problems.append(f"{where}: metric {name!r} is not exported by the servers")
            continue
        available |= known[name]
        extra = labels - known[name] - TARGET_LABELS
        if extra:
            problems.append(f"{where}: {name} has no label(s) {sorted(extra)} (it has {sorted(known[name])})")
    problems += [f"{where}: groups by label {label!r} that none of its metrics has"
                 for label in sorted(grouping_labels(expr) - available)]
    return problems


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    return exported_series()


def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(RULES["spec"]))
    out = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout


def test_promtool_rejects_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    broken = yaml.safe_load(yaml.safe_dump(RULES["spec"]))
    broken["groups"][0]["rules"][0]["expr"] = "max by (model (gliomagrade_drift_psi)"
    rules_file = tmp_path / "broken.yaml"
    rules_file.write_text(yaml.safe_dump(broken))
    assert subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, timeout=60).returncode


def test_required_alerts_exist_with_severity_and_summary() -> None:
    alerts = {r["alert"]: r for g in RULES["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert REQUIRED_ALERTS <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


@pytest.mark.parametrize(("where", "expr"), rule_exprs() + dashboard_exprs())
def test_queries_use_only_exported_metrics_and_labels(where: str, expr: str, series: dict[str, set[str]]) -> None:
    assert selectors(expr), f"{where}: no metric found in {expr!r}"
    problems = check_expr(where, expr, series)
    assert not problems, "\n".join(problems)


def test_the_metric_check_catches_a_wrong_name_and_label(series: dict[str, set[str]]) -> None:
    assert check_expr("x", 'rate(gliomagrade_prediction_total[5m])', series)
    assert check_expr("x", 'gliomagrade_drift_psi{stage="decode"}', series)
    assert check_expr("x", 'sum by (grade) (gliomagrade_drift_psi)', series)
    assert not check_expr("x", 'sum by (grade) (rate(gliomagrade_predictions_total{model=~"$model"}[5m]))', series)


def test_dashboard_covers_requests_errors_latency_predictions_drift_and_version() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert DASHBOARD["uid"] == "gliomagrade-drift"
    text = json.dumps([e for _, e in dashboard_exprs()])
    for metric in ("gliomagrade_predictions_total", "gliomagrade_errors_total", "gliomagrade_stage_seconds_bucket",
                   "gliomagrade_high_grade_probability_bucket", "gliomagrade_drift_psi", "gliomagrade_model_info",
                   "request_predict_seconds_bucket"):
        assert metric in text, metric
    names = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert {"datasource", "namespace", "model"} <= names
