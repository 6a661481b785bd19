"""``preprocess_cohort``: every case of a table, in parallel, resumable, failures reported, QC written.

Layout of ``out_dir``: ``cases/<subject>.npz`` (image, mask, seg), ``cases/<subject>.json`` (geometry,
qc, key), ``cohort.csv``, ``failures.csv``, ``qc/<subject>.png``, ``qc_montage.png``, ``preprocess.json``.

Resumability: a case is skipped when its JSON records the same key, the SHA-256 of the input files'
contents (all sequences, seg, ground-truth mask) and of the configuration plus ``PREPROCESS_VERSION``.
Full-content hashing, not size+mtime: a copied or re-synced cohort keeps its results, a file
rewritten in place with the same size is caught, and reading the inputs once more costs a few percent
of preprocessing them (it runs in the workers).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gliomagrade.config import PreprocessConfig
from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import InputError
from gliomagrade.parallel import map_items

logger = logging.getLogger(__name__)

PREPROCESS_VERSION = "1"
"""Bump when the chain's output changes for the same inputs and config: every case is redone."""
HASH_CHUNK = 1 << 20
FAILURE_COLUMNS = ("subject_id", "stage", "error", "reason")


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs for one case (plain strings: cheap to send to a process)."""

    subject_id: str
    images: dict[str, str]
    seg: str | None
    grade: str | None
    who_grade: int | None
    truth_mask: str | None
    truth_json: str | None
    out_dir: str
    config_json: str
    force: bool
    threads: int


@dataclass
class CaseResult:
    """Outcome of one case: done, skipped (up to date) or failed, with its QC or its error."""

    subject_id: str
    status: str
    qc: dict[str, Any] = field(default_factory=dict)
    stage: str = ""
    error: str = ""
    reason: str = ""


@dataclass
class CohortSummary:
    """What a cohort run produced: per-case results and the files written."""

    out_dir: Path
    results: list[CaseResult]

    @property
    def done(self) -> list[str]:
        return [r.subject_id for r in self.results if r.status == "done"]

    @property
    def skipped(self) -> list[str]:
        return [r.subject_id for r in self.results if r.status == "skipped"]

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


def safe_name(subject_id: str) -> str:
    """A subject ID usable as a file name (IDs are folder names; anything else is replaced by '_')."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", subject_id).lstrip(".")
    if not name:
        raise InputError("subject ID gives an empty file name", subject=subject_id)
    return name


def file_digest(path: Path, digest: hashlib._Hash) -> None:
    """Feed a file's bytes (or a DICOM folder's files, sorted) into ``digest``."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(file, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                digest.update(chunk)


def case_key(job: CaseJob) -> str:
    """SHA-256 of the inputs' contents, the configuration and the code version."""
    digest = hashlib.sha256(f"{PREPROCESS_VERSION}\n{job.config_json}\n".encode())
    for name, path in [*sorted(job.images.items()), ("seg", job.seg), ("truth", job.truth_mask)]:
        digest.update(f"\n{name}:".encode())
        if path:
            file_digest(Path(path), digest)
    return digest.hexdigest()


def _paths(out_dir: Path, subject_id: str) -> dict[str, Path]:
    name = safe_name(subject_id)
    return {"npz": out_dir / "cases" / f"{name}.npz", "json": out_dir / "cases" / f"{name}.json",
            "png": out_dir / "qc" / f"{name}.png"}


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file and rename, so a crash never leaves a truncated output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _up_to_date(paths: dict[str, Path], key: str) -> dict[str, Any] | None:
    """The stored record when this case's outputs exist with the same key, else None."""
    if not (paths["json"].is_file() and paths["npz"].is_file()):
        return None
    try:
        record = json.loads(paths["json"].read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("key") == key else None


def run_case(job: CaseJob) -> CaseResult:
    """Preprocess one case and write its outputs (worker entry point; never raises for a bad case)."""
    import SimpleITK as sitk

    if job.threads > 0:  # one ITK thread per worker process: the pool provides the parallelism
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(job.threads)
    out_dir = Path(job.out_dir)
    paths = _paths(out_dir, job.subject_id)
    stage = "hash"
    try:
        key = case_key(job)
        if not job.force and (record := _up_to_date(paths, key)) is not None:
            return CaseResult(job.subject_id, "skipped", qc=record["qc"])
        stage = "read"
        case, truth = _read_and_preprocess(job)
        stage = "write"
        _write_case(case, job, paths, key, truth)
        return CaseResult(job.subject_id, "done", qc=case.qc)
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop the cohort; reported in failures.csv
        for path in paths.values():  # never leave a stale result that cohort.csv could be confused with
            path.unlink(missing_ok=True)
        logger.debug("case %s failed:\n%s", job.subject_id, traceback.format_exc())
        return CaseResult(job.subject_id, "failed", stage=getattr(exc, "stage", None) or stage,
                          error=type(exc).__name__, reason=str(exc))


def _read_and_preprocess(job: CaseJob) -> tuple[Any, dict[str, Any] | None]:
    """Read the images (validated by imageio), preprocess, and add truth errors when known."""
    from gliomagrade import imageio
    from gliomagrade.preprocess.case import preprocess_case
    from gliomagrade.preprocess.qc import truth_errors

    images = {s: imageio.read_image(p, subject=job.subject_id, sequence=s) for s, p in job.images.items()}
    seg = imageio.read_segmentation(job.seg, subject=job.subject_id) if job.seg else None
    brain = imageio.read_segmentation(job.truth_mask, subject=job.subject_id) if job.truth_mask else None
    cfg = PreprocessConfig.model_validate_json(job.config_json)
    case = preprocess_case(images, cfg, subject=job.subject_id, seg=seg, brain_mask=brain)
    truth = json.loads(Path(job.truth_json).read_text()) if job.truth_json else None
    if truth is not None:
        case.qc.update(truth_errors(case.geometry, truth))
    return case, truth


def _write_case(case: Any, job: CaseJob, paths: dict[str, Path], key: str, truth: dict | None) -> None:
    """npz (arrays), thumbnail, then the JSON record last: its presence marks the case complete."""
    from gliomagrade.preprocess.qc import case_thumbnail

    arrays = {"image": case.image, "mask": case.mask}
    if case.seg is not None:
        arrays["seg"] = case.seg
    _atomic_write(paths["npz"], lambda p: np.savez(open(p, "wb"), **arrays))
    flag = " SUSPECT" if case.qc.get("registration_suspect") else ""
    dice = f" dice {case.qc['brain_dice']:.3f}" if "brain_dice" in case.qc else ""
    _atomic_write(paths["png"], lambda p: case_thumbnail(case, p, f"{job.subject_id}{dice}{flag}"))
    record = {"subject_id": job.subject_id, "key": key, "version": PREPROCESS_VERSION,
              "grade": job.grade, "who_grade": job.who_grade, "npz": paths["npz"].name,
              "geometry": case.geometry.to_dict(), "qc": case.qc}
    _atomic_write(paths["json"], lambda p: p.write_text(json.dumps(record, indent=1)))


def _as_cases(cases: Sequence[Any] | str | Path) -> tuple[list[Any], list[CaseResult], Path | None]:
    """Case records from a sequence, a cases.csv, or a cohort root (ingested now); ingest failures too."""
    if not isinstance(cases, str | Path):
        return list(cases), [], None
    from gliomagrade.ingest import CaseTable, discover

    path = Path(cases)
    if path.is_file() or (path / "cases.csv").is_file():
        table = CaseTable.read(path)
        root = path.parent if path.is_file() else path
    else:
        table = discover(path)
        root = path
    failures = [CaseResult(f.subject_id, "failed", stage="ingest", error="InputError", reason=f.reason)
                for f in table.failures]
    return table.cases, failures, root


def _truth_files(case: Any, root: Path | None) -> tuple[str | None, str | None]:
    """ground_truth/<subject>_brainmask.nii.gz and <subject>.json next to the cohort, when present."""
    candidates = [root] if root else []
    first = Path(next(iter(case.images.values())))
    candidates += list(first.parents)[:4]
    for folder in candidates:
        truth = folder / "ground_truth"
        mask, meta = truth / f"{case.subject_id}_brainmask.nii.gz", truth / f"{case.subject_id}.json"
        if mask.is_file() or meta.is_file():
            return (str(mask) if mask.is_file() else None), (str(meta) if meta.is_file() else None)
    return None, None


def preprocess_cohort(cases: Sequence[Any] | str | Path, out_dir: str | Path, cfg: PreprocessConfig, *,
                      workers: int = 0, force: bool = False) -> CohortSummary:
    """Preprocess every case (CaseRecord-like, a cases.csv or a cohort root) into ``out_dir``."""
    from gliomagrade.parallel import default_workers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, ingest_failures, root = _as_cases(cases)
    _check_unique(records)
    workers = workers or default_workers()
    config_json = cfg.model_dump_json()
    (out / "preprocess.json").write_text(json.dumps({"version": PREPROCESS_VERSION,
                                                     "config": cfg.model_dump(mode="json")}, indent=1))
    jobs = [_job(c, root, out, config_json, force, threads=1 if workers > 1 else 0) for c in records]
    outcomes = map_items(run_case, jobs, workers=workers, desc="preprocess")
    results = [o.result if o.ok and o.result is not None else
               CaseResult(o.item.subject_id, "failed", stage="worker", error=type(o.error).__name__,
                          reason=str(o.error)) for o in outcomes]
    results += ingest_failures
    _write_tables(out, jobs, results)
    for failure in (r for r in results if r.status == "failed"):
        logger.warning("preprocess failed: %s [%s] %s", failure.subject_id, failure.stage, failure.reason)
    return CohortSummary(out, results)


def _check_unique(records: Sequence[Any]) -> None:
    """Two cases writing to one file name would overwrite each other: refuse up front."""
    seen: dict[str, str] = {}
    for case in records:
        name = safe_name(case.subject_id)
        if name in seen:
            raise InputError(f"subject IDs {seen[name]!r} and {case.subject_id!r} map to the same output file")
        seen[name] = case.subject_id


def _job(case: Any, root: Path | None, out: Path, config_json: str, force: bool, threads: int) -> CaseJob:
    """A worker's job for one case record (a missing sequence is reported by the worker, per case)."""
    truth_mask, truth_json = _truth_files(case, root)
    images = {s: str(p) for s, p in case.images.items() if s in SEQUENCES}
    return CaseJob(case.subject_id, images, str(case.seg) if case.seg else None, case.grade, case.who_grade,
                   truth_mask, truth_json, str(out), config_json, force, threads)


def _write_tables(out: Path, jobs: Sequence[CaseJob], results: Sequence[CaseResult]) -> None:
    """cohort.csv (successful cases, QC columns), failures.csv, and the QC montage."""
    from gliomagrade.preprocess.qc import montage

    by_subject = {j.subject_id: j for j in jobs}
    good = sorted((r for r in results if r.status in ("done", "skipped")), key=lambda r: r.subject_id)
    qc_keys = sorted({k for r in good for k, v in r.qc.items() if isinstance(v, bool | int | float | str)})
    with open(out / "cohort.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject_id", "grade", "who_grade", "npz", "status", *qc_keys])
        for r in good:
            job = by_subject[r.subject_id]
            npz = _paths(out, r.subject_id)["npz"].relative_to(out).as_posix()
            who = "" if job.who_grade is None else job.who_grade
            writer.writerow([r.subject_id, job.grade or "", who, npz, r.status, *[r.qc.get(k, "") for k in qc_keys]])
    with open(out / "failures.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FAILURE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in sorted((r for r in results if r.status == "failed"), key=lambda r: r.subject_id):
            writer.writerow(asdict(r))
    montage([_paths(out, r.subject_id)["png"] for r in good], out / "qc_montage.png")
