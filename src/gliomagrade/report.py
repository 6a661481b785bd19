"""The run report: one self-contained HTML page (figures embedded as base64 PNG, also saved beside it).

``write_report(run_dir)`` -> ``run_dir/report/index.html`` with ROC curves (per fold, pooled with a
bootstrap band), a reliability diagram, the confusion matrix, metric tables, training curves, the
ablation (if ``ablation.csv``), CAM montages (if ``cam/*.png``) and a model card.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve
from sklearn.preprocessing import label_binarize

from gliomagrade import metrics as M
from gliomagrade.evaluate import (
    FOLD_COLS,
    evaluate_run,
    fmt,
    fold_rows,
    pooled_rows,
    read_oof,
    score_matrix,
)

log = logging.getLogger(__name__)

MAX_CAM_IMAGES = 12
FOLD_HEADERS = {
    "auc": "AUC [95% CI]",
    "balanced_accuracy": "balanced acc.",
    "ece": "ECE",
    "best_epoch": "best epoch",
}
BAND_BOOT = 500
FOLD_COLOURS = matplotlib.colormaps["tab10"].colors
STYLE = {
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


# ---------------------------------------------------------------------------------------------- figures
def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, facecolor="white")  # Figure() draws with Agg: no pyplot, no global backend state
    return path


def plot_roc(
    oof: pd.DataFrame,
    prob: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    seed: int = 0,
    band_boot: int = BAND_BOOT,
) -> Path:
    """Per-fold ROC curves (thin) and the pooled OOF curve with its 95 % bootstrap band, per class."""
    y = oof["label"].to_numpy(dtype=int)
    folds = oof["fold"].to_numpy(dtype=int)
    binary = len(class_names) == 2
    targets = [1] if binary else list(range(len(class_names)))
    onehot = label_binarize(y, classes=list(range(len(class_names)))) if not binary else y[:, None]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.6 * len(targets), 4.4))
        axes = fig.subplots(1, len(targets), squeeze=False)
        for ax, c in zip(axes[0], targets, strict=True):
            yc = onehot[:, 0] if binary else onehot[:, c]
            _roc_panel(ax, yc, prob[:, c], folds, seed, band_boot)
            title = f"{class_names[1]} vs {class_names[0]}" if binary else f"{class_names[c]} vs rest"
            ax.set_title(title)
        fig.suptitle("ROC, out-of-fold predictions", fontsize=11)
        fig.tight_layout()
    return _save(fig, path)


def _roc_panel(ax: Axes, y: np.ndarray, s: np.ndarray, folds: np.ndarray, seed: int, band_boot: int) -> None:
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    for i, f in enumerate(np.unique(folds)):
        m = folds == f
        if np.unique(y[m]).size < 2:
            continue
        fpr, tpr, _ = roc_curve(y[m], s[m])
        ax.plot(
            fpr,
            tpr,
            lw=1,
            alpha=0.55,
            color=FOLD_COLOURS[i % 10],
            label=f"fold {f} ({M.roc_auc(y[m], s[m]):.2f})",
        )
    if np.unique(y).size == 2:
        band = M.roc_band(y, s, n_boot=band_boot, seed=seed)
        ax.fill_between(
            band["fpr"], band["tpr_lo"], band["tpr_hi"], color="black", alpha=0.15, lw=0, label="95% CI"
        )
        auc, ci = M.auc_with_ci(y, s, seed=seed)
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color="black", lw=2.2, label=f"pooled {auc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", frameon=True, framealpha=0.92, edgecolor="none", fontsize=7.5)


def plot_reliability(metrics: dict[str, Any], path: Path) -> Path:
    """Top-label reliability diagram (calibrated and, if logits were saved, uncalibrated) + confidence histogram."""
    cal = metrics["calibration"]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.8, 5.6))
        ax, hx = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
        curves = [("reliability", "calibrated", "tab:blue", metrics["pooled"].get("ece"))]
        if "reliability_uncalibrated" in cal:
            curves.append(
                (
                    "reliability_uncalibrated",
                    "uncalibrated (T = 1)",
                    "tab:orange",
                    metrics["pooled"].get("ece_uncalibrated"),
                )
            )
        for key, label, colour, e in curves:
            r = cal[key]
            ax.plot(r["confidence"], r["accuracy"], "-", color=colour, lw=1.2, alpha=0.8)
            ax.scatter(
                r["confidence"],
                r["accuracy"],
                s=12 + 4 * np.sqrt(r["count"]),
                color=colour,
                zorder=3,
                label=f"{label}, ECE {fmt(e)}",
            )
        r = cal["reliability"]
        lower = np.asarray(r["bin_lower"])
        width = np.asarray(r["bin_upper"]) - lower
        hx.bar(lower, r["count"], width=width, align="edge", color="tab:blue", alpha=0.6)
        lo = 1.0 / len(metrics["class_names"])
        ax.set(
            xlim=(lo - 0.02, 1.01),
            ylim=(0, 1.02),
            ylabel="accuracy in bin",
            title=f"Reliability (top label, {cal['n_bins']} bins; marker area ~ cases)",
        )
        ax.legend(loc="upper left")
        hx.set(xlabel="confidence (largest class probability)", ylabel="cases")
        fig.tight_layout()
    return _save(fig, path)


def plot_confusion(metrics: dict[str, Any], path: Path) -> Path:
    """Confusion matrix: counts and row-normalised percentages (rows = truth)."""
    cm = np.asarray(metrics["pooled"]["confusion_matrix"], dtype=float)
    names = metrics["class_names"]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(1.4 * len(names) + 2, 1.2 * len(names) + 1.6))
        ax = fig.subplots()
        im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}\n{100 * frac[i, j]:.0f}%",
                    ha="center",
                    va="center",
                    color="white" if frac[i, j] > 0.6 else "black",
                    fontsize=10,
                )
        ax.set(
            xticks=range(len(names)),
            yticks=range(len(names)),
            xticklabels=names,
            yticklabels=names,
            xlabel="predicted",
            ylabel="true",
            title="Confusion matrix (pooled OOF)",
        )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        fig.tight_layout()
    return _save(fig, path)


def plot_training(run: Path, path: Path) -> Path | None:
    """Loss and validation AUC per epoch for every fold, best epoch marked."""
    logs = sorted((run / "folds").glob("*/log.csv"), key=lambda p: _fold_key(p.parent.name))
    if not logs:
        return None
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(10, 3.8))
        lx, ax = fig.subplots(1, 2)
        for i, p in enumerate(logs):
            df = pd.read_csv(p)
            colour = FOLD_COLOURS[i % 10]
            if {"epoch", "train_loss"} <= set(df.columns):
                lx.plot(df["epoch"], df["train_loss"], color=colour, lw=1, ls="--")
            if {"epoch", "val_loss"} <= set(df.columns):
                lx.plot(df["epoch"], df["val_loss"], color=colour, lw=1.4, label=f"fold {p.parent.name}")
            if {"epoch", "val_auc"} <= set(df.columns):
                ax.plot(df["epoch"], df["val_auc"], color=colour, lw=1.4, label=f"fold {p.parent.name}")
            best = _best_epoch(p.parent)
            if best is not None:
                ax.axvline(best, color=colour, lw=0.8, ls=":")
        lx.set(xlabel="epoch", ylabel="loss", title="Loss (solid: validation, dashed: training)")
        ax.set(xlabel="epoch", ylabel="validation AUC", title="Validation AUC (dotted: best epoch)")
        lx.legend()
        fig.tight_layout()
    return _save(fig, path)


def _fold_key(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (10**9, name)


def _best_epoch(fold_dir: Path) -> int | None:
    meta = fold_dir / "meta.json"
    if not meta.is_file():
        return None
    value = json.loads(meta.read_text()).get("best_epoch")
    return int(value) if value is not None else None


def plot_ablation(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """AUC (95 % CI) per ablation variant; the reference variant highlighted."""
    rows = [r for r in rows if r.get("auc") is not None and np.isfinite(float(r["auc"]))]
    if not rows:
        return None
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6, 0.45 * len(rows) + 1.4))
        ax = fig.subplots()
        ypos = np.arange(len(rows))[::-1]
        for yy, r in zip(ypos, rows, strict=True):
            lo, hi = (np.nan if v is None else float(v) for v in (r.get("auc_ci") or [None, None]))
            ref = r.get("variant") == r.get("reference")
            colour = "black" if ref else "tab:blue"
            ax.errorbar(
                r["auc"],
                yy,
                xerr=[[r["auc"] - lo], [hi - r["auc"]]] if np.isfinite([lo, hi]).all() else None,
                fmt="o",
                color=colour,
                capsize=3,
            )
        ax.axvline(0.5, ls=":", color="grey", lw=1)
        for yy, r in zip(ypos, rows, strict=True):
            if r.get("delta_auc") is not None:
                lo, hi = r.get("delta_auc_ci") or [None, None]
                ax.annotate(
                    f"\u0394 {fmt(r['delta_auc'], [lo, hi])}",
                    (1.0, yy),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                    annotation_clip=False,
                )
        lows = [float(r["auc_ci"][0]) for r in rows if (r.get("auc_ci") or [None])[0] is not None]
        ax.set(
            yticks=ypos,
            yticklabels=[str(r["variant"]) for r in rows],
            xlabel="ROC AUC (95% CI)",
            title="Ablation (black: reference; \u0394 vs reference, paired bootstrap)",
            xlim=(max(0.0, min([0.45, *lows]) - 0.05), 1.0),
        )
        fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ HTML
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;
line-height:1.45;padding:0 1em} h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em} table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ddd;
padding:.3em .6em;text-align:left} th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top} figcaption{font-size:.85em;color:#555;max-width:520px}
img{max-width:100%} .cams img{width:220px;margin:.2em;border:1px solid #eee} .muted{color:#666}
.card{background:#fafbfc;border:1px solid #e3e6ea;border-radius:6px;padding:.4em 1.2em}
.warn{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read_config(run: Path) -> dict[str, Any]:
    path = run / "config.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def _cohort_source(cfg: dict[str, Any], oof: pd.DataFrame) -> str:
    for key in ("cohort", "cohort_dir", "source", "data"):
        if key in cfg and not isinstance(cfg[key], dict):
            return str(cfg[key])
        if key in cfg and isinstance(cfg[key], dict):
            return ", ".join(f"{k}: {v}" for k, v in cfg[key].items())
    if oof["subject_id"].astype(str).str.startswith("SYN_").all():
        return "synthetic cohort (glioma cohort synth), subject ids SYN_*"
    return "not recorded in config.yaml"


def model_card(metrics: dict[str, Any], oof: pd.DataFrame, cfg: dict[str, Any]) -> str:
    """Model card (data, preprocessing, performance, calibration, intended use, limitations, ethics)."""
    p, names = metrics["pooled"], metrics["class_names"]
    counts = ", ".join(
        f"{k}: {v} ({100 * v / metrics['n']:.0f}%)" for k, v in metrics["class_counts"].items()
    )
    who = ""
    if "who_grade" in oof.columns:
        vc = oof["who_grade"].value_counts().sort_index()
        who = "; WHO grades " + ", ".join(f"{_roman(g)}: {n}" for g, n in vc.items())
    pre, tr = cfg.get("preprocess", {}) or {}, cfg.get("train", {}) or {}
    pre_txt = (
        f"reorientation and resampling to a fixed {pre.get('grid', '?')} grid in MNI152 template space "
        f"({pre.get('template_transform', '?')} registration), co-registration of t1/t2/flair to t1ce: "
        f"{pre.get('coregister', '?')}, N4 bias correction: {pre.get('n4', '?')}, skull stripping: "
        f"{pre.get('skull_strip', '?')}, z-score normalisation within the brain mask"
        if pre
        else "not recorded (no config.yaml in the run directory)"
    )
    model_txt = (
        f"{tr.get('model', '?')} 3D CNN on sequences {', '.join(tr.get('sequences', []) or ['?'])}; "
        f"{metrics['n_folds']}-fold patient-level stratified cross-validation, "
        f"imbalance handling: {tr.get('imbalance', '?')}; per-fold temperature scaling and "
        f"decision threshold ({tr.get('threshold_rule', '?')}) chosen on the fold's validation split"
    )
    task = (
        "LGG vs HGG (positive class HGG)" if metrics["task"] == "binary" else "WHO grade " + " / ".join(names)
    )
    items = [
        ("Task", task),
        ("Data", f"{metrics['n']} patients ({counts}){who}. Source: {_cohort_source(cfg, oof)}."),
        ("Preprocessing", pre_txt),
        ("Model and training", model_txt),
        (
            "Performance (pooled out-of-fold, 95% bootstrap CI)",
            f"ROC AUC {fmt(p.get('auc'), p.get('auc_ci'))}; balanced accuracy "
            f"{fmt(p.get('balanced_accuracy'), p.get('balanced_accuracy_ci'))}; sensitivity "
            f"{fmt(p.get('sensitivity'), p.get('sensitivity_ci'))}; specificity {fmt(p.get('specificity'), p.get('specificity_ci'))}",
        ),
        (
            "Calibration",
            f"temperature scaling per fold; ECE {fmt(p.get('ece'))} (uncalibrated {fmt(p.get('ece_uncalibrated'))}), "
            f"Brier {fmt(p.get('brier'))}",
        ),
        (
            "Intended use",
            "Research and decision support: a pre-operative, non-invasive estimate of glioma grade to help plan "
            "further work-up. An adjunct to, never a replacement for, histopathological and molecular diagnosis "
            "(WHO CNS5 grading requires tissue: IDH, 1p/19q, CDKN2A). Not a medical device; not for treatment decisions.",
        ),
        (
            "Limitations",
            "Cross-validated estimates on one cohort are optimistic: published models lose most accuracy on external, "
            "multi-centre data, so validate on your own site before any use. If the cohort is synthetic, these numbers "
            "only show that the pipeline learns a planted signal and say nothing about clinical performance. BraTS-derived "
            "data are pre-processed, largely single-protocol, and BraTS 'LGG' mixes WHO grade II and III, so LGG vs HGG "
            "is not WHO grading. Grade is not molecular class. Input outside training conditions (other field strengths, "
            "missing sequences, post-operative scans, non-glioma lesions) is out of scope.",
        ),
        (
            "Ethical considerations",
            "Errors are asymmetric: calling an HGG low grade may delay treatment, so the operating point and its "
            "sensitivity must be chosen clinically. Class balance and scanner mix of the training cohort may not match a "
            "deployment population; monitor drift. Grad-CAM maps show where the model looked, not why, and must not be "
            "read as tumour delineation. No patient identifiers are kept in model artifacts or logs.",
        ),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<div class="card"><table>{rows}</table></div>'


def _roman(g: Any) -> str:
    return {2: "II", 3: "III", 4: "IV"}.get(int(g), str(g)) if pd.notna(g) else "unknown"


def _ablation_html(rows: list[dict[str, Any]] | None, fig: Path | None) -> str:
    if not rows:
        return ""
    if "auc" in rows[0] and "auc_ci" in rows[0]:
        table = _table(
            ["variant", "n", "AUC [95% CI]", "delta AUC vs reference [95% CI]"],
            [
                [
                    r["variant"],
                    r["n"],
                    fmt(r["auc"], r["auc_ci"]),
                    fmt(r["delta_auc"], r["delta_auc_ci"]) if "delta_auc" in r else "reference",
                ]
                for r in rows
            ],
        )
        note = "<p class='muted'>delta = AUC(variant) - AUC(reference), paired bootstrap on the same subjects.</p>"
    else:
        cols = list(rows[0])
        table = _table(cols, [[_cell(r.get(c)) for c in cols] for r in rows])
        note = ""
    return "<h2>Ablation</h2>" + table + note + (_img(fig, "Ablation: AUC per variant") if fig else "")


def _cell(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else "n/a" if v is None else str(v)


def _evidence_html(evidence: dict[str, dict[str, float]] | None, class_names: list[str]) -> str:
    """Mean per-sequence share of the highest-grade logit, by true class (per-sequence encoders only)."""
    if not evidence:
        return ""
    labels = sorted({k for v in evidence.values() for k in v}, key=int)
    head = "".join(f"<th>true {_e(class_names[int(k)])}</th>" for k in labels)
    rows = "".join(f"<tr><td>{_e(seq)}</td>" + "".join(f"<td>{v.get(k, float('nan')):+.2f}</td>" for k in labels)
                   + "</tr>" for seq, v in evidence.items())
    return ("<p>How far each sequence's encoder pushed the call towards the highest grade (mean share of "
            f"its centred logit):</p><table><tr><th>sequence</th>{head}</tr>{rows}</table>")


def _cam_html(run: Path, cam: dict[str, Any] | None, class_names: list[str]) -> str:
    pngs = sorted((run / "cam").glob("*.png"))[:MAX_CAM_IMAGES] if (run / "cam").is_dir() else []
    if not pngs and not cam:
        return ""
    parts = ["<h2>Grad-CAM</h2>"]
    if cam:
        parts.append(
            f"<p>{cam['n_scored']} cases scored: mean CAM mass inside the tumour "
            f"{fmt(cam['mass_inside_mean'], cam['mass_inside_ci'])}; pointing-game hit rate "
            f"{fmt(cam['pointing_rate'], cam['pointing_ci'])} (Wilson 95% CI, n = {cam['n_pointing']}).</p>"
        )
        if (hg := cam.get("high_grade_predicted")) and hg["n_scored"]:
            parts.append(
                f"<p>Cases called high grade ({hg['n_scored']}), where the map is the evidence for the call: "
                f"mass inside {fmt(hg['mass_inside_mean'], hg['mass_inside_ci'])}; pointing "
                f"{fmt(hg['pointing_rate'], hg['pointing_ci'])}.</p>"
            )
        parts.append(_evidence_html(cam.get("sequence_evidence"), class_names))
        if dice := cam.get("segmentation_dice"):
            shown = ", ".join(f"{_e(k)} {v:.2f}" if math.isfinite(v) else f"{_e(k)} n/a" for k, v in dice.items())
            parts.append(f"<p>The model's own segmentation of the held-out cases, mean Dice: {shown}.</p>")
    if pngs:
        imgs = "".join(
            f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" alt="{_e(p.stem)}" title="{_e(p.stem)}">'
            for p in pngs
        )
        parts.append(f'<div class="cams">{imgs}</div>')
    return "".join(parts)


def render_html(run: Path, metrics: dict[str, Any], oof: pd.DataFrame, figs: dict[str, Path | None]) -> str:
    """The whole page as a string."""
    cfg = _read_config(run)
    names = metrics["class_names"]
    per_class = ""
    if "per_class" in metrics["pooled"]:
        per_class = "<h3>Per class (one vs rest)</h3>" + _table(
            ["class", "n", "AUC", "sensitivity", "specificity", "PPV"],
            [
                [k, v["n"], fmt(v["auc"]), fmt(v["sensitivity"]), fmt(v["specificity"]), fmt(v["ppv"])]
                for k, v in metrics["pooled"]["per_class"].items()
            ],
        )
    warn = ""
    if "SYN_" in str(oof["subject_id"].iloc[0]):
        warn = (
            '<p class="warn">Synthetic cohort: these numbers validate the pipeline, not a clinical model.</p>'
        )
    fig_html = "".join(
        _img(figs[k], cap)
        for k, cap in (
            (
                "roc",
                "ROC curves: thin lines per fold, black the pooled OOF curve with its pointwise 95% bootstrap band.",
            ),
            (
                "reliability",
                "Reliability diagram of the calibrated probabilities; histogram of confidences below.",
            ),
            ("confusion", "Confusion matrix at each fold's validation-chosen operating point."),
        )
        if figs.get(k)
    )
    training = (
        _img(figs["training"], "Training curves per fold")
        if figs.get("training")
        else "<p>No log.csv found.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gliomagrade run {_e(run.name)}</title><style>{CSS}</style></head>
<body>
<h1>gliomagrade: {_e(run.name)}</h1>
<p class="muted">Task {_e(metrics["task"])} ({_e(", ".join(names))}); {metrics["n"]} patients, {metrics["n_folds"]}-fold
cross-validation; CIs: {_e(metrics["bootstrap"]["method"])} bootstrap, {metrics["bootstrap"]["n_boot"]} resamples.</p>
{warn}
<h2>Performance</h2>
{_table(["metric (pooled out-of-fold)", "value [95% CI]"], pooled_rows(metrics))}
{per_class}
{fig_html}
<h2>Per fold</h2>
{_table([FOLD_HEADERS.get(c, c) for c in FOLD_COLS], fold_rows(metrics))}
<h2>Training</h2>
{training}
{_ablation_html(metrics.get("ablation"), figs.get("ablation"))}
{_cam_html(run, metrics.get("cam"), names)}
<h2>Model card</h2>
{model_card(metrics, oof, cfg)}
</body></html>
"""


def write_report(
    run_dir: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    seed: int = 0,
    band_boot: int = BAND_BOOT,
    n_boot: int = M.N_BOOT,
) -> Path:
    """Write ``run_dir/report/index.html`` (+ the PNGs beside it); evaluates the run first if needed.

    ``band_boot`` is the number of bootstrap resamples of the pointwise ROC band; ``n_boot`` those of
    ``evaluate_run`` when ``metrics.json`` is missing.
    """
    run = Path(run_dir)
    if metrics is None:
        mpath = run / "metrics.json"
        metrics = (
            json.loads(mpath.read_text()) if mpath.is_file() else evaluate_run(run, n_boot=n_boot, seed=seed)
        )
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    oof = read_oof(run)
    prob = score_matrix(oof, metrics["class_names"], "prob_", str(run / "oof.csv"))
    figs: dict[str, Path | None] = {
        "roc": plot_roc(oof, prob, metrics["class_names"], out / "roc.png", seed, band_boot),
        "reliability": plot_reliability(metrics, out / "reliability.png"),
        "confusion": plot_confusion(metrics, out / "confusion.png"),
        "training": plot_training(run, out / "training.png"),
        "ablation": plot_ablation(metrics["ablation"], out / "ablation.png")
        if metrics.get("ablation")
        else None,
    }
    page = out / "index.html"
    page.write_text(render_html(run, metrics, oof, figs))
    log.info("report written to %s", page)
    return page
