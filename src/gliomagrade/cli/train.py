"""`glioma train`, `glioma evaluate` and `glioma experiment ablation`."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's sub-commands to the `glioma` parser."""
    p = sub.add_parser("train", help="patient-level cross-validated training on a preprocessed cohort",
                       description="K-fold CV (stratified, by patient) with inner validation for early "
                                   "stopping, calibration and threshold; resumable.")
    _common(p)
    p.add_argument("--fold", type=int, action="append", dest="only_folds", metavar="K",
                   help="train only this fold (repeatable); evaluation runs once every fold is done")
    p.add_argument("--no-resume", action="store_true", help="retrain finished folds and ignore epoch states")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="recompute metrics.json and the report from a run's saved predictions")
    p.add_argument("run_dir", help="a `glioma train` output directory (oof.csv + folds/*/meta.json)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the CIs")
    p.set_defaults(func=cmd_evaluate)

    exp = sub.add_parser("experiment", help="experiments built on cross-validated training")
    esub = exp.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    p = esub.add_parser("ablation", help="the same CV per single sequence and for all four",
                        description="Writes ablation.csv/json/png: AUC (95% CI) and balanced accuracy per "
                                    "set, and all-four minus the best single sequence (paired bootstrap).")
    _common(p, sequences=False)
    p.add_argument("--sets", default="t1,t1ce,t2,flair,all",
                   help="comma-separated sets; 'all' = four sequences, 't1ce+flair' = a combination")
    p.add_argument("--no-resume", action="store_true")
    p.set_defaults(func=cmd_ablation)


def _common(p: argparse.ArgumentParser, *, sequences: bool = True) -> None:
    """Options shared by training commands: cohort, profile, output and profile overrides."""
    p.add_argument("--cohort", required=True, help="preprocessed cohort directory (cohort.csv + cases/)")
    p.add_argument("--profile", default="quick", help="quick | full | path to a profile YAML")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--task", choices=("binary", "who"), help="LGG/HGG or WHO II/III/IV")
    if sequences:
        p.add_argument("--sequences", help="comma-separated subset of t1,t1ce,t2,flair")
    p.add_argument("--model", help="network name (smallcnn, densenet121, resnet18, ..., unet: segment, then grade)")
    p.add_argument("--folds", type=int, help="number of CV folds")
    p.add_argument("--epochs", type=int, help="maximum epochs per fold")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int)
    p.add_argument("--lesion-gate", choices=("on", "tissue", "off"),
                   help="pool over the lesion a gate learns from the segmentations (on: the trunk's maps; "
                        "tissue: a shallow tissue path's, finer; both need a segmentation for every case) or "
                        "over the whole brain (off); default: the profile's choice")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _profile(args: argparse.Namespace) -> Any:
    """The profile with the command-line overrides applied (validated)."""
    from gliomagrade.config import load_profile
    from gliomagrade.constants import DEFAULT_TISSUE_WIDTH, GATE_OPTIONS

    overrides = {k: getattr(args, k, None) for k in ("task", "sequences", "model", "folds", "epochs", "device", "seed")}
    profile = load_profile(args.profile).with_overrides(train=overrides)
    if getattr(args, "lesion_gate", None) is None:
        return profile
    mode, cfg = args.lesion_gate, profile.train
    if cfg.model == "unet":  # no gate: --lesion-gate only says whether to use the segmentations
        return profile.with_overrides(train={"lesion_loss": (cfg.lesion_loss or 1.0) if mode != "off" else 0.0})
    kwargs = {k: v for k, v in cfg.model_kwargs.items() if k not in GATE_OPTIONS} | {"lesion_gate": mode != "off"}
    if mode == "tissue":
        kwargs["tissue_width"] = cfg.model_kwargs.get("tissue_width") or DEFAULT_TISSUE_WIDTH
    loss = (cfg.lesion_loss or 1.0) if mode != "off" else 0.0
    return profile.with_overrides(train={"model_kwargs": kwargs, "lesion_loss": loss})


def _print_metrics(result: dict[str, Any], title: str) -> None:
    """Pooled and per-fold tables (rich)."""
    from rich.console import Console
    from rich.table import Table

    from gliomagrade.evaluate import FOLD_COLS, fold_rows, pooled_rows

    console = Console()
    pooled = Table(title=f"{title}: pooled out-of-fold (n={result['n']}, 95% CI)")
    pooled.add_column("metric")
    pooled.add_column("value")
    for label, value in pooled_rows(result):
        pooled.add_row(label, value)
    console.print(pooled)
    folds = Table(title="per fold (test part; threshold and temperature from inner validation)")
    for c in FOLD_COLS:
        folds.add_column(c)
    for row in fold_rows(result):
        folds.add_row(*row)
    console.print(folds)


def cmd_train(args: argparse.Namespace) -> int:
    from gliomagrade.train import train_cv

    profile = _profile(args)
    res = train_cv(args.cohort, profile, args.out, resume=not args.no_resume, folds=args.only_folds,
                   progress=not args.quiet)
    if res.metrics is None:
        print(f"{len(res.folds)} of {profile.train.folds} folds finished in {args.out}; "
              "run the remaining folds to get the cross-validated metrics")
        return 0
    _print_metrics(res.metrics, f"{profile.train.model} {profile.train.task} {','.join(profile.train.sequences)}")
    print(f"run written to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gliomagrade.evaluate import evaluate_run
    from gliomagrade.report import write_report

    result = evaluate_run(args.run_dir, n_boot=args.n_boot)
    write_report(args.run_dir)
    _print_metrics(result, str(args.run_dir))
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from gliomagrade.ablation import run_ablation
    from gliomagrade.evaluate import fmt

    rows = run_ablation(args.cohort, _profile(args), args.out, args.sets, resume=not args.no_resume,
                        progress=not args.quiet)
    table = Table(title="sequence ablation (pooled OOF, 95% CI)")
    for c in ("variant", "AUC", "balanced accuracy", "all four - best single"):
        table.add_column(c)
    for r in rows:
        delta = (f"{fmt(r['delta_auc_vs_best_single'], (r['delta_lo'], r['delta_hi']))} vs {r['best_single']}"
                 if "delta_auc_vs_best_single" in r else "")
        table.add_row(r["variant"], fmt(r["auc"], (r["auc_lo"], r["auc_hi"])),
                      fmt(r["balanced_accuracy"], (r["balanced_accuracy_lo"], r["balanced_accuracy_hi"])), delta)
    Console().print(table)
    print(f"ablation written to {args.out} (ablation.csv, ablation.json, ablation.png)")
    return 0
