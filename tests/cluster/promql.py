"""Metric names and label names used by a PromQL expression, and the names the servers export."""

from __future__ import annotations

import re

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
            "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
            "count_values", "group"}
"""PromQL keywords and aggregation operators (``max by (x) (...)``: not followed by a parenthesis)."""
TARGET_LABELS = {"namespace", "pod", "container", "job", "instance", "endpoint", "service", "le"}
"""Labels Prometheus/the operator add to every scraped series (``le``: histogram buckets)."""
EXTERNAL = {"up": {"job", "instance", "pod", "namespace"},
            "kube_deployment_status_replicas_available": {"namespace", "deployment"}}
"""Series that are not exported by the servers: Prometheus' ``up`` and kube-state-metrics."""


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """``(metric, label names in its matcher)`` for every series selector in ``expr``."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals out of the way
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    found = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", text):
        name, matcher = m.group(1), m.group(2) or ""
        rest = text[m.end():].lstrip()
        before = text[:m.start()].rstrip()
        in_grouping = re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$", before)
        if name in KEYWORDS or rest.startswith("(") or in_grouping:
            continue
        if re.fullmatch(r"\d.*", name):
            continue
        found.append((name, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matcher))))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in ``by (...)``, ``without (...)``, ``on (...)``, ``ignoring (...)`` clauses."""
    return {label.strip() for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
            for label in group.split(",") if label.strip()}


def exported_series() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric the transformer/predictor register (ours and KServe's)."""
    from kserve import metrics as kserve_metrics
    from prometheus_client import Counter, Gauge, Histogram, Info

    from gliomagrade.serving.metrics import ALL_METRICS

    out: dict[str, set[str]] = {}
    kserve = [v for v in vars(kserve_metrics).values() if isinstance(v, Histogram)]
    for metric in (*ALL_METRICS, *kserve):
        labels = set(metric._labelnames)  # noqa: SLF001 - prometheus_client keeps them there
        name = metric._name  # noqa: SLF001
        if isinstance(metric, Histogram):
            out |= {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
        elif isinstance(metric, Counter):
            out[f"{name}_total"] = labels
        elif isinstance(metric, Info):
            out[f"{name}_info"] = labels
        elif isinstance(metric, Gauge):
            out[name] = labels
    return out
