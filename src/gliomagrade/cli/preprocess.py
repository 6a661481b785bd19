"""`glioma preprocess`: a case table (or cohort root) -> the preprocessed cohort, with a QC summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `glioma preprocess` to the `glioma` parser."""
    p = sub.add_parser("preprocess", help="register, skull-strip and normalise a cohort onto the template grid",
                       description="Preprocess every case of a case table (cases.csv from `glioma ingest`) or "
                                   "of a cohort root (ingested on the fly). Resumable: unchanged cases are kept.")
    p.add_argument("cases", help="cases.csv, its folder, or a raw cohort root")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--profile", default="quick", help="quick | full | a YAML file (default: quick)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: one per CPU)")
    p.add_argument("--force", action="store_true", help="redo cases whose outputs are up to date")
    p.add_argument("--n4", action=argparse.BooleanOptionalAction, default=None,
                   help="N4 bias-field correction (default: the profile's setting)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Preprocess the cohort, print the QC table; exit 1 when any case failed."""
    from gliomagrade.config import load_profile
    from gliomagrade.preprocess.cohort import preprocess_cohort

    profile = load_profile(args.profile)
    if args.n4 is not None:
        profile = profile.with_overrides(preprocess={"n4": args.n4})
    summary = preprocess_cohort(args.cases, args.out, profile.preprocess, workers=args.workers, force=args.force)
    print_summary(summary)
    return 0 if summary.ok else 1


def _fmt(value: Any, digits: int = 3) -> str:
    return "" if value is None or value == "" else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_summary(summary: Any) -> None:
    """A rich table: status, brain Dice, registration metric, pose error, flags per case; then totals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"preprocess -> {summary.out_dir}")
    for column in ("subject", "status", "dice", "template MI", "pose mm", "brain ml", "s", "flags / error"):
        table.add_column(column, overflow="fold")
    for r in sorted(summary.results, key=lambda r: (r.status != "failed", r.subject_id)):
        qc = r.qc
        metric = qc.get("template_affine_metric", qc.get("template_rigid_metric"))
        flags = qc.get("qc_reasons", "") if r.status != "failed" else f"[{r.stage}] {r.reason[:160]}"
        style = {"failed": "red", "skipped": "dim"}.get(r.status, "yellow" if qc.get("registration_suspect") else "")
        table.add_row(r.subject_id, r.status, _fmt(qc.get("brain_dice")), _fmt(metric), _fmt(qc.get("pose_error_mm"), 2),
                      _fmt(qc.get("brain_volume_ml"), 0), _fmt(qc.get("time_total_s"), 1), flags, style=style)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs and CI: no wrapped IDs
    console.print(table)
    suspect = sum(bool(r.qc.get("registration_suspect")) for r in summary.results)
    console.print(f"{len(summary.done)} done, {len(summary.skipped)} up to date, {len(summary.failed)} failed, "
                  f"{suspect} flagged suspect; outputs in {summary.out_dir}")
