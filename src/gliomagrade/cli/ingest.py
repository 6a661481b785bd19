"""`glioma ingest ROOT --out DIR`: find and validate a raw cohort, write cases.csv and failures.csv.

Exit status: 0 when every case passed, 1 when any case failed (the table is still written), 2 on usage
errors (unknown layout, unreadable sequence map, missing root).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import InputError

LAYOUT_CHOICES = ("auto", "brats2019", "brats2020", "manifest", "dicom")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `glioma ingest` to the `glioma` parser."""
    p = sub.add_parser(
        "ingest", help="find and validate a raw cohort; write cases.csv and failures.csv",
        description="Recognise a cohort layout (BraTS 2018-2021, manifest CSV, DICOM folders), validate every "
                    "case and write the case table. Exit 0: all cases passed; 1: some failed; 2: usage error.")
    p.add_argument("root", type=Path, help="cohort folder, or a manifest .csv")
    p.add_argument("--out", type=Path, required=True, help="output folder for cases.csv and failures.csv")
    p.add_argument("--layout", choices=LAYOUT_CHOICES, default="auto", help="force a layout (default: detect)")
    p.add_argument("--sequence-map", action="append", default=[], metavar="SEQ=DESCRIPTION|FILE.yaml",
                   help="map a DICOM SeriesDescription/ProtocolName (exact or glob, case-insensitive) to a "
                        "sequence, e.g. t1ce='AX T1 POST'; or a YAML file {t1ce: [...], flair: ...}; repeatable")
    p.add_argument("--no-validate", dest="validate", action="store_false",
                   help="only find and label cases; do not read the voxels")
    p.add_argument("--fov-tolerance", type=float, default=None,
                   help="max relative field-of-view difference between sequences (default: profile value)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: one per CPU)")
    p.set_defaults(func=run_ingest)


def parse_sequence_map(items: list[str]) -> dict[str, list[str]]:
    """Merge `SEQ=DESCRIPTION` items and YAML files into one override map."""
    import yaml

    merged: dict[str, list[str]] = {}
    for item in items:
        if "=" in item and not Path(item).is_file():
            seq, _, pattern = item.partition("=")
            entries = {seq.strip().lower(): pattern.strip().strip("'\"")}
        else:
            path = Path(item)
            if not path.is_file():
                raise InputError("expected SEQ=DESCRIPTION or a YAML file", source=item)
            try:
                entries = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise InputError(f"invalid YAML ({exc})", source=item) from exc
            if not isinstance(entries, dict):
                raise InputError("sequence map YAML must be a mapping of sequence -> description(s)", source=item)
        for seq, value in entries.items():
            if seq not in SEQUENCES:
                raise InputError(f"sequence map key {seq!r} is not one of {SEQUENCES}", source=item)
            merged.setdefault(seq, []).extend([value] if isinstance(value, str) else list(value or []))
    return merged


def run_ingest(args: argparse.Namespace) -> int:
    """Run discovery/validation, write the table, print a summary; 1 when any case failed."""
    from rich.console import Console

    from gliomagrade.ingest import DEFAULT_FOV_TOLERANCE, discover

    table = discover(args.root, layout=args.layout, validate=args.validate,
                     sequence_map=parse_sequence_map(args.sequence_map), workers=args.workers,
                     fov_tolerance=DEFAULT_FOV_TOLERANCE if args.fov_tolerance is None else args.fov_tolerance)
    cases_csv = table.write(args.out)
    print_summary(table, Console())
    Console().print(f"wrote {cases_csv} and {cases_csv.with_name('failures.csv')}")
    return 1 if table.failures else 0


def print_summary(table, console) -> None:
    """Rich tables: cases per layout and grade, then each failure and note with its reason."""
    from rich.table import Table

    counts = Table(title="usable cases")
    for col in ("layout", "grade", "cases"):
        counts.add_column(col, justify="right" if col == "cases" else "left")
    for (layout, grade), n in sorted(table.counts().items()):
        counts.add_row(layout, grade, str(n))
    counts.add_row("total", "", str(len(table.cases)), style="bold")
    console.print(counts)
    for title, rows, style in (("failed cases", table.failures, "red"), ("notes", table.notes, "yellow")):
        if not rows:
            continue
        detail = Table(title=f"{title} ({len(rows)})", title_style=style, show_lines=False)
        detail.add_column("subject")
        detail.add_column("reason", overflow="fold")
        detail.add_column("source", overflow="fold")
        for row in rows:
            detail.add_row(row.subject_id, row.reason, row.source)
        console.print(detail)
