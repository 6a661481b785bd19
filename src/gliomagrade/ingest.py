"""Find the cases of a raw cohort (BraTS 2018-2021 folders, a manifest CSV, DICOM folders) and validate them.

``discover(root)`` recognises the layout, builds one ``CaseRecord`` per case and, with ``validate``,
reads every sequence (in worker processes) to check it is a finite, non-empty 3D volume whose field of
view agrees with the others. Nothing is dropped silently: every case that cannot be used is a
``CaseFailure`` with its reason. Subject IDs are folder names or manifest IDs; DICOM identifiers
(PatientName, PatientID, ...) are never read into the table, the logs or the errors.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gliomagrade.config import PreprocessConfig
from gliomagrade.constants import BINARY_CLASSES, SEQUENCES, binary_grade
from gliomagrade.errors import GliomaError, ImageError, InputError
from gliomagrade.parallel import map_items

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("brats2019", "brats2020", "manifest", "dicom")
NAME_MAPPING = "name_mapping.csv"
MANIFEST_NAME = "manifest.csv"
LABELS_NAME = "labels.csv"
CASE_COLUMNS = ("subject_id", "layout", "grade", "who_grade", *SEQUENCES, "seg")
FAILURE_COLUMNS = ("subject_id", "source", "reason")
DEFAULT_FOV_TOLERANCE = PreprocessConfig().fov_tolerance

# BraTS file names: <case>_<seq>.nii[.gz]; BraTS 2023 names (<case>-t1n, t1c, t2w, t2f) are aliases.
_BRATS_FILE = re.compile(r"^(?P<stem>.+?)[_-](?P<seq>t1ce|t1c|t1n|t1|t2w|t2f|t2|flair|seg)\.nii(\.gz)?$", re.I)
_ALIASES = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}
# BraTS 2020 case 355 names its segmentation W39_1998.09.19_Segm.nii: accept a lone *seg*.nii file.
_SEG_FALLBACK = re.compile(r"seg", re.I)
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.I)
_ROMAN = {"II": 2, "III": 3, "IV": 4}


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class CaseRecord:
    """One usable case: a path per sequence (a DICOM series is a directory), labels and its layout."""

    subject_id: str
    images: dict[str, Path]
    seg: Path | None
    grade: str | None
    who_grade: int | None
    layout: str


@dataclass(frozen=True)
class CaseFailure:
    """A case that cannot be used (or a note about one): which, where, and why."""

    subject_id: str
    source: str
    reason: str


@dataclass
class CaseTable:
    """The ingested cohort: usable cases, failed cases with reasons, and notes (e.g. unmapped series)."""

    cases: list[CaseRecord]
    failures: list[CaseFailure]
    notes: list[CaseFailure] = field(default_factory=list)

    def write(self, out_dir: str | Path) -> Path:
        """Write ``cases.csv`` and ``failures.csv`` (absolute paths) into ``out_dir``; return cases.csv."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "cases.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CASE_COLUMNS)
            writer.writeheader()
            for case in self.cases:
                writer.writerow(_case_row(case))
        with open(out / "failures.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FAILURE_COLUMNS)
            writer.writeheader()
            for failure in self.failures:
                writer.writerow(vars(failure))
        return out / "cases.csv"

    @classmethod
    def read(cls, path: str | Path) -> CaseTable:
        """Read a table written by ``write`` (``path`` is cases.csv or its folder)."""
        path = Path(path)
        cases_csv = path / "cases.csv" if path.is_dir() else path
        if not cases_csv.is_file():
            raise InputError("case table not found", source=str(cases_csv))
        with open(cases_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = [c for c in CASE_COLUMNS if rows and c not in rows[0]]
        if missing:
            raise InputError(f"case table lacks columns {missing}", source=str(cases_csv))
        cases = [_row_case(row) for row in rows]
        failures: list[CaseFailure] = []
        failures_csv = cases_csv.with_name("failures.csv")
        if failures_csv.is_file():
            with open(failures_csv, newline="") as fh:
                failures = [CaseFailure(r["subject_id"], r["source"], r["reason"]) for r in csv.DictReader(fh)]
        return cls(cases, failures)

    def counts(self) -> Counter[tuple[str, str]]:
        """Number of usable cases per (layout, grade), grade 'unknown' when unlabelled."""
        return Counter((c.layout, c.grade or "unknown") for c in self.cases)


def _case_row(case: CaseRecord) -> dict[str, str]:
    row = {"subject_id": case.subject_id, "layout": case.layout, "grade": case.grade or "",
           "who_grade": "" if case.who_grade is None else str(case.who_grade),
           "seg": str(case.seg.resolve()) if case.seg else ""}
    row.update({seq: str(case.images[seq].resolve()) for seq in SEQUENCES})
    return row


def _row_case(row: Mapping[str, str]) -> CaseRecord:
    return CaseRecord(
        subject_id=row["subject_id"], images={seq: Path(row[seq]) for seq in SEQUENCES},
        seg=Path(row["seg"]) if row["seg"] else None, grade=row["grade"] or None,
        who_grade=int(row["who_grade"]) if row["who_grade"] else None, layout=row["layout"])


# ------------------------------------------------------------------------------------------- labels
def parse_labels(grade: str | None, who_grade: str | int | None, *, subject: str, source: str
                 ) -> tuple[str | None, int | None]:
    """Parse and cross-check a binary grade and a WHO grade (II/III -> LGG, IV -> HGG); either may be blank."""
    g = (grade or "").strip().upper() or None
    if g is not None and g not in BINARY_CLASSES:
        raise InputError(f"grade {grade!r} is not one of {BINARY_CLASSES}", subject=subject, source=source)
    w_text = str(who_grade).strip().upper().removeprefix("WHO").strip(" -") if who_grade is not None else ""
    who: int | None = None
    if w_text:
        who = _ROMAN.get(w_text) or (int(w_text) if w_text.isdigit() else None)
        if who not in (2, 3, 4):
            raise InputError(f"WHO grade {who_grade!r} is not 2, 3 or 4", subject=subject, source=source)
    if who is not None:
        implied = binary_grade(who)
        if g is not None and g != implied:
            raise InputError(f"grade {g} disagrees with WHO grade {who} (which is {implied} by the BraTS "
                             "convention)", subject=subject, source=source)
        g = implied
    return g, who


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with stripped header names (BOM tolerated)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


# ------------------------------------------------------------------------------------------ layouts
@dataclass
class _Found:
    """What a layout scanner produced: cases with their sources, failures and notes."""

    cases: list[tuple[CaseRecord, str]] = field(default_factory=list)
    failures: list[CaseFailure] = field(default_factory=list)
    notes: list[CaseFailure] = field(default_factory=list)

    def extend(self, other: _Found) -> None:
        self.cases += other.cases
        self.failures += other.failures
        self.notes += other.notes


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _looks_like_dicom(path: Path) -> bool:
    """True when ``path`` carries the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _find_manifest(root: Path) -> Path | None:
    """The manifest CSV in ``root``: manifest.csv, or the one CSV with subject_id and sequence columns."""
    if (root / MANIFEST_NAME).is_file():
        return root / MANIFEST_NAME
    for csv_path in sorted(root.glob("*.csv")):
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            header = {h.strip() for h in next(csv.reader(fh), [])}
        if {"subject_id", *SEQUENCES} <= header:
            return csv_path
    return None


def detect_layout(root: Path) -> tuple[str, Path]:
    """Recognise a cohort's layout; return it with the folder (or manifest file) to read."""
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest", root
        raise InputError("expected a cohort folder or a manifest .csv file", source=str(root))
    if not root.is_dir():
        raise InputError("cohort root not found", source=str(root))
    if list(root.glob("name_mapping*.csv")):
        return "brats2020", root
    if (root / "HGG").is_dir() or (root / "LGG").is_dir():
        return "brats2019", root
    if (manifest := _find_manifest(root)) is not None:
        return "manifest", manifest
    subdirs = _subdirs(root)
    for case_dir in subdirs[:5]:
        files = sorted(p for p in case_dir.iterdir() if p.is_file())
        if any(_BRATS_FILE.match(p.name) for p in files):
            return "brats2020", root
        files += [p for sub in _subdirs(case_dir)[:8] for p in sorted(sub.iterdir())[:3] if p.is_file()]
        if any(_looks_like_dicom(p) for p in files[:40]):
            return "dicom", root
    marked = [d for d in subdirs if list(d.glob("name_mapping*.csv")) or (d / "HGG").is_dir() or (d / "LGG").is_dir()]
    if len(marked) == 1 or len(subdirs) == 1:  # an unpacked archive, or a cohort beside other folders
        return detect_layout((marked or subdirs)[0])
    raise InputError("could not recognise the cohort layout: expected name_mapping.csv (BraTS 2020), HGG/ and "
                     "LGG/ folders (BraTS 2018/2019), a manifest CSV, case folders of <case>_<seq>.nii[.gz] "
                     "files (BraTS 2021) or case folders of DICOM series", source=str(root))


def _brats_case(case_dir: Path, *, grade: str | None, layout: str) -> tuple[CaseRecord, str]:
    """Build a BraTS case from ``<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]`` files; raise naming what is wrong."""
    subject, source = case_dir.name, str(case_dir)
    found: dict[str, list[Path]] = {}
    others = []
    for path in sorted(p for p in case_dir.iterdir() if p.is_file() and _NIFTI.search(p.name)):
        m = _BRATS_FILE.match(path.name)
        if m:
            seq = m["seq"].lower()
            found.setdefault(_ALIASES.get(seq, seq), []).append(path)
        else:
            others.append(path)
    if "seg" not in found:
        found["seg"] = [p for p in others if _SEG_FALLBACK.search(p.name)]
    twice = {seq: paths for seq, paths in found.items() if len(paths) > 1}
    if twice:
        raise InputError("several files for " + "; ".join(f"{s}: {', '.join(p.name for p in ps)}"
                                                           for s, ps in twice.items()), subject=subject, source=source)
    missing = [seq for seq in SEQUENCES if not found.get(seq)]
    if missing:
        names = sorted(p.name for ps in found.values() for p in ps) + [p.name for p in others if p not in
                                                                        found.get("seg", [])]
        raise InputError(f"missing sequence(s) {', '.join(missing)}; found {names or 'no NIfTI files'}",
                         subject=subject, source=source)
    seg = found["seg"][0] if found.get("seg") else None
    grade, _ = parse_labels(grade, None, subject=subject, source=source)
    return CaseRecord(subject, {seq: found[seq][0] for seq in SEQUENCES}, seg, grade, None, layout), source


def _collect(builder: Callable[[Path], tuple[CaseRecord, str]], case_dirs: Sequence[Path]) -> _Found:
    """Build one case per folder, turning each InputError into a CaseFailure named after the folder."""
    out = _Found()
    for case_dir in case_dirs:
        try:
            out.cases.append(builder(case_dir))
        except InputError as exc:
            out.failures.append(CaseFailure(case_dir.name, exc.source or str(case_dir), exc.reason))
    return out


def _scan_brats2019(root: Path) -> _Found:
    """BraTS 2018/2019: ``HGG/<case>/`` and ``LGG/<case>/``, grade from the folder."""
    if not any((root / grade).is_dir() for grade in BINARY_CLASSES):
        raise InputError("layout brats2019 needs HGG/ and/or LGG/ folders", source=str(root))
    out = _Found()
    for grade in BINARY_CLASSES:
        if (root / grade).is_dir():
            out.extend(_collect(functools.partial(_brats_case, grade=grade, layout="brats2019"),
                                _subdirs(root / grade)))
    return out


def _name_mapping(root: Path) -> tuple[dict[str, str | None], Path | None]:
    """Grades by BraTS 2020 subject ID from name_mapping.csv (None when it has no Grade column)."""
    paths = sorted(root.glob("name_mapping*.csv"))
    if not paths:
        return {}, None
    rows = _read_csv(paths[0])
    columns = list(rows[0]) if rows else []
    id_col = "BraTS_2020_subject_ID" if "BraTS_2020_subject_ID" in columns else next(
        (c for c in reversed(columns) if c.lower().endswith("subject_id")), None)
    if id_col is None:
        raise InputError(f"no subject ID column in {columns}; expected BraTS_2020_subject_ID", source=str(paths[0]))
    return {row[id_col]: (row.get("Grade") or None) for row in rows if row.get(id_col)}, paths[0]


def _scan_brats2020(root: Path) -> _Found:
    """BraTS 2020/2021: case folders beside an optional name_mapping.csv (the Grade column, if any)."""
    grades, mapping_path = _name_mapping(root)
    case_dirs = _subdirs(root)
    out = _collect(lambda d: _brats_case(d, grade=grades.get(d.name), layout="brats2020"), case_dirs)
    on_disk = {d.name for d in case_dirs}
    for subject in sorted(set(grades) - on_disk):
        out.failures.append(CaseFailure(subject, str(mapping_path), f"listed in {mapping_path.name} but no "
                                        "case folder found"))
    if mapping_path is not None:
        for subject in sorted(on_disk - set(grades)):
            out.notes.append(CaseFailure(subject, str(mapping_path), "not listed in the name mapping: no grade"))
    return out


def _scan_manifest(csv_path: Path) -> _Found:
    """A manifest CSV: subject_id, grade and/or who_grade, t1, t1ce, t2, flair[, seg] relative to the CSV."""
    rows = _read_csv(csv_path)
    columns = set(rows[0]) if rows else set()
    missing = [c for c in ("subject_id", *SEQUENCES) if c not in columns]
    if rows and not columns & {"grade", "who_grade"}:
        missing.append("grade or who_grade")
    if not rows or missing:
        raise InputError(f"manifest lacks columns {missing}" if rows else "manifest has no rows",
                         source=str(csv_path))
    out = _Found()
    for line, row in enumerate(rows, start=2):
        source = f"{csv_path}:{line}"
        subject = row["subject_id"]
        try:
            out.cases.append((_manifest_case(row, csv_path.parent, subject, source), source))
        except InputError as exc:
            out.failures.append(CaseFailure(subject or f"<line {line}>", source, exc.reason))
    return out


def _manifest_case(row: Mapping[str, str], base: Path, subject: str, source: str) -> CaseRecord:
    """One manifest row -> CaseRecord; paths must exist."""
    if not subject:
        raise InputError("empty subject_id", source=source)
    grade, who = parse_labels(row.get("grade"), row.get("who_grade"), subject=subject, source=source)
    paths = {}
    for seq in (*SEQUENCES, "seg"):
        text = row.get(seq, "")
        if not text:
            if seq != "seg":
                raise InputError(f"no path given for sequence {seq}", subject=subject, source=source)
            continue
        path = Path(text) if Path(text).is_absolute() else base / text
        if not path.exists():
            raise InputError(f"{seq} file not found: {path}", subject=subject, source=source)
        paths[seq] = path
    return CaseRecord(subject, {s: paths[s] for s in SEQUENCES}, paths.get("seg"), grade, who, "manifest")


def _dicom_labels(root: Path) -> dict[str, tuple[str, str]]:
    """Optional labels.csv beside the case folders: subject_id -> (grade, who_grade) as text."""
    path = root / LABELS_NAME
    if not path.is_file():
        return {}
    rows = _read_csv(path)
    if rows and "subject_id" not in rows[0]:
        raise InputError("labels.csv lacks a subject_id column", source=str(path))
    return {r["subject_id"]: (r.get("grade", ""), r.get("who_grade", "")) for r in rows}


def _dicom_case(case_dir: Path, *, labels: Mapping[str, tuple[str, str]], sequence_map: Mapping | None
                ) -> tuple[CaseRecord, list[str]]:
    """Map one case folder's DICOM series to sequences (headers only); return it with unmapped series."""
    from gliomagrade.imageio import dicom_files, scan_dicom

    subject, source = case_dir.name, str(case_dir)
    series = scan_dicom(dicom_files(case_dir), source=source, subject=subject)
    by_seq: dict[str, list] = {}
    for s in series:
        by_seq.setdefault(s.sequence(sequence_map) or "", []).append(s)
    unmapped = [s.label for s in by_seq.pop("", [])]
    problems = [f"{seq} matches {len(v)} series ({'; '.join(s.label for s in v)})"
                for seq, v in by_seq.items() if len(v) > 1]
    missing = [seq for seq in SEQUENCES if seq not in by_seq]
    if missing:
        problems.append(f"no series for {', '.join(missing)}")
    if problems:
        hint = f"; unmapped series: {'; '.join(unmapped)}" if unmapped else ""
        raise InputError("; ".join(problems) + hint + " (use --sequence-map)", subject=subject, source=source)
    images = {seq: _series_dir(by_seq[seq][0], series, case_dir) for seq in SEQUENCES}
    grade, who = parse_labels(*labels.get(subject, ("", "")), subject=subject, source=source)
    return CaseRecord(subject, images, None, grade, who, "dicom"), unmapped


def _series_dir(series, all_series: list, case_dir: Path) -> Path:
    """The folder that holds exactly this series, or the case folder when series share a folder."""
    parents = {p.parent for p in series.files}
    if len(parents) == 1:
        folder = parents.pop()
        if not any(p.parent == folder for other in all_series if other is not series for p in other.files):
            return folder
    return case_dir


def _scan_dicom(root: Path, sequence_map: Mapping | None, workers: int) -> _Found:
    """Folders of DICOM series, one folder per case; labels from an optional labels.csv."""
    labels = _dicom_labels(root)
    case_dirs, skipped = [], []
    for folder in _subdirs(root):
        (case_dirs if _holds_dicom(folder) else skipped).append(folder)
    fn = functools.partial(_dicom_case, labels=labels, sequence_map=sequence_map)
    out = _Found()
    for outcome in map_items(fn, case_dirs, workers=workers, desc="scan DICOM"):
        subject = outcome.item.name
        if outcome.ok:
            case, unmapped = outcome.result
            out.cases.append((case, str(outcome.item)))
            if unmapped:
                out.notes.append(CaseFailure(subject, str(outcome.item), "unmapped series: " + "; ".join(unmapped)))
        else:
            out.failures.append(_failure_from(subject, str(outcome.item), outcome.error))
    out.notes += [CaseFailure(d.name, str(d), "skipped: folder holds no DICOM file") for d in skipped
                  if d.name not in labels]
    out.failures += [CaseFailure(d.name, str(d), "listed in labels.csv but its folder holds no DICOM file")
                     for d in skipped if d.name in labels]
    for subject in sorted(set(labels) - {d.name for d in case_dirs + skipped}):
        out.failures.append(CaseFailure(subject, str(root / LABELS_NAME), "listed in labels.csv but no case "
                                        "folder found"))
    return out


def _holds_dicom(folder: Path) -> bool:
    """True when any file below ``folder`` carries the DICOM preamble (other folders are not cases)."""
    return any(_looks_like_dicom(p) for p in folder.rglob("*") if p.is_file())


def _failure_from(subject: str, source: str, error: BaseException | None) -> CaseFailure:
    """A CaseFailure from an exception: our errors give their reason, others their type too."""
    if isinstance(error, InputError):
        return CaseFailure(subject, error.source or source, error.reason)
    return CaseFailure(subject, source, f"{type(error).__name__}: {error}")


# -------------------------------------------------------------------------------------- validation
def validate_case(case: CaseRecord, *, fov_tolerance: float = DEFAULT_FOV_TOLERANCE,
                  sequence_map: Mapping | None = None) -> None:
    """Read every sequence (and the seg) of a case; raise ImageError listing every problem found."""
    from gliomagrade.imageio import check_same_extent, read_image, read_segmentation

    images, problems = {}, []
    for seq in SEQUENCES:
        try:
            images[seq] = read_image(case.images[seq], subject=case.subject_id, sequence=seq,
                                     sequence_map=sequence_map)
        except InputError as exc:
            problems.append(exc.reason + (f" ({case.images[seq].name})" if case.images[seq].is_file() else ""))
    if case.seg is not None:
        try:
            images["seg"] = read_segmentation(case.seg, subject=case.subject_id)
        except InputError as exc:
            problems.append(f"{exc.reason} ({case.seg.name})")
    if not problems:
        try:
            check_same_extent(images, fov_tolerance, subject=case.subject_id)
        except ImageError as exc:
            problems.append(exc.reason)
    if problems:
        raise ImageError("; ".join(problems), subject=case.subject_id, source=_case_dir(case))


def _case_dir(case: CaseRecord) -> str:
    """The folder a case lives in (for messages): the deepest folder shared by its images."""
    return os.path.commonpath([str(p.parent if p.is_file() else p) for p in case.images.values()])


# -------------------------------------------------------------------------------------------- main
def discover(root: str | Path, *, layout: str = "auto", validate: bool = True,
             sequence_map: Mapping[str, str | Sequence[str]] | None = None, workers: int = 0,
             fov_tolerance: float = DEFAULT_FOV_TOLERANCE) -> CaseTable:
    """Find, label and (optionally) validate every case under ``root``; failures carry their reasons."""
    from gliomagrade.imageio import check_sequence_map

    sequence_map = check_sequence_map(sequence_map)
    root = Path(root)
    if layout == "auto":
        layout, where = detect_layout(root)
    elif layout in LAYOUTS:
        where = root
        if layout == "manifest" and root.is_dir():
            where = _find_manifest(root) or root / MANIFEST_NAME
        if not where.exists():
            raise InputError(f"cohort root not found for layout {layout}", source=str(where))
    else:
        raise InputError(f"unknown layout {layout!r}; expected auto or one of {LAYOUTS}", source=str(root))
    logger.info("reading %s as layout %s", where, layout)
    found = {"brats2019": _scan_brats2019, "brats2020": _scan_brats2020, "manifest": _scan_manifest}.get(
        layout, lambda p: _scan_dicom(p, sequence_map, workers))(where)
    if not found.cases and not found.failures:
        raise InputError(f"found no cases for layout {layout}", source=str(where))
    found.cases, duplicates = _split_duplicates(found.cases, found.failures)
    found.failures += duplicates
    if validate and found.cases:
        found = _validate_all(found, fov_tolerance, sequence_map, workers)
    table = CaseTable([c for c, _ in found.cases], sorted(found.failures, key=lambda f: (f.subject_id, f.source)),
                      found.notes)
    logger.info("%d usable case(s), %d failed, layout %s", len(table.cases), len(table.failures), layout)
    return table


def _split_duplicates(cases: list[tuple[CaseRecord, str]], failures: list[CaseFailure]
                      ) -> tuple[list[tuple[CaseRecord, str]], list[CaseFailure]]:
    """Fail every case whose subject ID occurs more than once (also among failed cases), naming the others."""
    sources: dict[str, list[str]] = {}
    for subject, source in [(c.subject_id, s) for c, s in cases] + [(f.subject_id, f.source) for f in failures]:
        sources.setdefault(subject, []).append(source)
    dupes = {s for s, v in sources.items() if len(v) > 1}
    found = [CaseFailure(case.subject_id, source, "duplicate subject ID: also at "
                         + ", ".join(o for o in sources[case.subject_id] if o != source))
             for case, source in cases if case.subject_id in dupes]
    return [(c, s) for c, s in cases if c.subject_id not in dupes], found


def _validate_all(found: _Found, fov_tolerance: float, sequence_map: Mapping | None, workers: int) -> _Found:
    """Validate cases in worker processes; a failing case moves to the failures with its reason."""
    fn = functools.partial(validate_case, fov_tolerance=fov_tolerance, sequence_map=sequence_map)
    outcomes = map_items(fn, [case for case, _ in found.cases], workers=workers, desc="validate")
    kept = []
    for (case, source), outcome in zip(found.cases, outcomes, strict=True):
        if outcome.ok:
            kept.append((case, source))
        else:
            found.failures.append(_failure_from(case.subject_id, source, outcome.error))
            if not isinstance(outcome.error, GliomaError):
                logger.warning("case %s: unexpected %s during validation", case.subject_id,
                               type(outcome.error).__name__)
    found.cases = kept
    return found
