"""Read a preprocessed cohort into one array, and serve it in batches (GPU-resident or DataLoader).

``load_cohort`` turns ``DIR/cohort.csv`` + ``DIR/cases/<subject>.npz`` into a ``Cohort``: one float16
tensor ``N x C x D x H x W`` holding the selected sequences in canonical order, integer labels for the
task, subject ids, WHO grades and (if every case has one) the segmentations.

Two ways to feed a training loop, giving identical batches for the same epoch order:
``DeviceBatches`` keeps the whole cohort on the device and slices it (the GPU path: no host
round-trip, no worker processes); ``LoaderBatches`` wraps a ``torch.utils.data.DataLoader`` over host
memory (pinned, non-blocking copies) for cohorts that do not fit in device memory.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gliomagrade.constants import BINARY_CLASSES, SEQUENCES, WHO_CLASSES, binary_grade, parse_sequences
from gliomagrade.errors import InputError
from gliomagrade.segment import tissue_codes

log = logging.getLogger(__name__)

Task = Literal["binary", "who"]
REQUIRED_COLUMNS = ("subject_id", "grade", "who_grade", "npz")


def class_names_for(task: str) -> tuple[str, ...]:
    """Class names of a task: ``("LGG", "HGG")`` (positive = HGG) or the three WHO grades."""
    if task == "binary":
        return BINARY_CLASSES
    if task == "who":
        return WHO_CLASSES
    raise InputError(f"unknown task {task!r}; expected 'binary' or 'who'")


@dataclass(frozen=True)
class Cohort:
    """A preprocessed cohort in memory: images, labels and who is who."""

    images: torch.Tensor
    """float16 ``N x C x D x H x W``, channels = ``sequences`` in canonical order."""
    labels: np.ndarray
    """int64 ``N``: index into ``class_names``."""
    subject_ids: tuple[str, ...]
    who_grades: np.ndarray
    """int64 ``N``: 2/3/4, or -1 where the cohort does not give one."""
    sequences: tuple[str, ...]
    task: str
    class_names: tuple[str, ...]
    seg: np.ndarray | None = None
    """uint8 ``N x D x H x W`` BraTS labels when every case has a segmentation."""
    seg_missing: tuple[str, ...] = ()
    """Subjects without a segmentation (``seg`` is None when there is any)."""

    def __len__(self) -> int:
        return len(self.subject_ids)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Spatial grid ``(D, H, W)``."""
        d, h, w = self.images.shape[2:]
        return int(d), int(h), int(w)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Cohort:
        """The cases at positions ``idx`` (in that order)."""
        index = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            images=self.images[torch.from_numpy(index)],
            labels=self.labels[index],
            subject_ids=tuple(self.subject_ids[i] for i in index),
            who_grades=self.who_grades[index],
            seg=None if self.seg is None else self.seg[index],
            seg_missing=tuple(s for s in (self.subject_ids[i] for i in index) if s in self.seg_missing),
        )

    def lesion_masks(self) -> torch.Tensor:
        """``(N, 1, D, H, W)`` uint8 tissue codes (``segment.tissue_codes``: 0 background, 1 oedema, 2 core,
        3 enhancing) for the segmentation loss of a lesion gate or a unet."""
        if self.seg is None:
            shown = ", ".join(self.seg_missing[:10]) + (" ..." if len(self.seg_missing) > 10 else "")
            raise InputError(f"a lesion-gated or unet model needs a segmentation for every case; "
                             f"{len(self.seg_missing)} lack one: {shown} (train without lesion_gate and not with "
                             "unet, or add their *_seg files)")
        return torch.from_numpy(tissue_codes(self.seg))[:, None]

    def fingerprint(self) -> list[list[str | int]]:
        """Subjects and labels in order: what a finished fold must have been trained on to be reused."""
        return [[s, int(y)] for s, y in zip(self.subject_ids, self.labels, strict=True)]


def _read_table(path: Path) -> list[dict[str, str]]:
    """Rows of ``cohort.csv``; refuse a table without the columns training needs."""
    if not path.is_file():
        raise InputError("cohort table not found (run `glioma preprocess` first)", source=str(path))
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"missing columns {missing}; found {reader.fieldnames}", source=str(path))
        rows = list(reader)
    if not rows:
        raise InputError("cohort table has no cases", source=str(path))
    return rows


def _who(row: dict[str, str]) -> int:
    """The WHO grade of a row, -1 when blank."""
    text = (row.get("who_grade") or "").strip()
    return int(float(text)) if text else -1


def _label(row: dict[str, str], task: str) -> int | None:
    """Class index of a row for the task, or None when the row cannot say."""
    who = _who(row)
    if task == "who":
        return who - 2 if who in (2, 3, 4) else None
    grade = (row.get("grade") or "").strip().upper()
    if not grade and who in (2, 3, 4):
        grade = binary_grade(who)
    return BINARY_CLASSES.index(grade) if grade in BINARY_CLASSES else None


def load_cohort(
    cohort_dir: str | Path,
    sequences: Sequence[str] | str = SEQUENCES,
    task: Task | str = "binary",
    *,
    progress: bool = True,
) -> Cohort:
    """Load ``cohort.csv`` and every case's npz into one float16 tensor with the chosen sequences."""
    root = Path(cohort_dir)
    seqs = parse_sequences(sequences)
    class_names = class_names_for(task)
    rows = _read_table(root / "cohort.csv")
    labels = [_label(r, task) for r in rows]
    unlabelled = [r["subject_id"] for r, y in zip(rows, labels, strict=True) if y is None]
    if unlabelled:
        what = "a WHO grade (2/3/4)" if task == "who" else "a grade (LGG/HGG) or a WHO grade"
        raise InputError(
            f"{len(unlabelled)} case(s) lack {what} for task {task!r}: {', '.join(unlabelled[:20])}"
            + (" ..." if len(unlabelled) > 20 else ""),
            source=str(root / "cohort.csv"),
        )
    subjects = [r["subject_id"] for r in rows]
    dupes = sorted({s for s in subjects if subjects.count(s) > 1})
    if dupes:
        raise InputError(f"subject ids appear more than once: {dupes[:10]}", source=str(root / "cohort.csv"))
    channels = [SEQUENCES.index(s) for s in seqs]
    images: torch.Tensor | None = None
    segs: list[np.ndarray | None] = []
    for i, row in enumerate(tqdm(rows, desc="load cohort", unit="case", disable=not progress)):
        image, seg = _read_case(root, row, channels)
        if images is None:
            images = torch.empty((len(rows), *image.shape), dtype=torch.float16)
        elif tuple(image.shape) != tuple(images.shape[1:]):
            raise InputError(
                f"image shape {tuple(image.shape)} differs from the cohort's {tuple(images.shape[1:])}",
                subject=row["subject_id"],
                source=row["npz"],
            )
        images[i] = torch.from_numpy(image)
        segs.append(seg)
    assert images is not None
    seg_array = np.stack(segs) if all(s is not None for s in segs) else None  # type: ignore[arg-type]
    return Cohort(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        subject_ids=tuple(subjects),
        who_grades=np.asarray([_who(r) for r in rows], dtype=np.int64),
        sequences=seqs,
        task=str(task),
        class_names=class_names,
        seg=seg_array,
        seg_missing=tuple(s for s, g in zip(subjects, segs, strict=True) if g is None),
    )


def _read_case(root: Path, row: dict[str, str], channels: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """One case's selected channels (float16) and seg (uint8 or None); errors name the subject and file."""
    path = root / row["npz"]
    subject = row["subject_id"]
    if not path.is_file():
        raise InputError("preprocessed case file not found", subject=subject, source=str(path))
    with np.load(path, allow_pickle=False) as npz:
        if "image" not in npz.files:
            raise InputError(f"npz has no 'image' array (found {npz.files})", subject=subject, source=str(path))
        image = npz["image"]
        seg = npz["seg"].astype(np.uint8) if "seg" in npz.files else None
    if image.ndim != 4 or image.shape[0] != len(SEQUENCES):
        raise InputError(
            f"image has shape {image.shape}, expected ({len(SEQUENCES)}, D, H, W) in order {SEQUENCES}",
            subject=subject,
            source=str(path),
        )
    if not np.isfinite(image).all():
        raise InputError("image holds NaN or infinite values", subject=subject, source=str(path))
    return np.ascontiguousarray(image[channels], dtype=np.float16), seg


# --------------------------------------------------------------------------------------------- batches


def epoch_order(labels: np.ndarray, *, seed: int, balanced: bool, shuffle: bool = True) -> np.ndarray:
    """Case order for one epoch: a seeded permutation, or (balanced) a class-balanced draw with replacement."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    if balanced:
        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        return rng.choice(n, size=n, replace=True, p=weights / weights.sum())
    return rng.permutation(n) if shuffle else np.arange(n)


def batch_slices(order: np.ndarray, batch_size: int, *, min_last: int = 2) -> list[np.ndarray]:
    """Split an epoch order into batches; a last batch smaller than ``min_last`` is dropped (BatchNorm
    cannot train on one case) unless it is the only one. Use ``min_last=1`` for inference."""
    cuts = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(cuts) > 1 and len(cuts[-1]) < min_last:
        cuts = cuts[:-1]
    return cuts


class DeviceBatches:
    """The cohort held on the device as float16; a batch is an index gather, no copy from the host."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray | torch.Tensor, device: torch.device,
                 lesion: torch.Tensor | None = None) -> None:
        self.images = images.to(device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.lesion = None if lesion is None else lesion.to(device)
        self.device = device

    @classmethod
    def from_cohort(cls, cohort: Cohort, device: torch.device, *, lesion: bool = False) -> DeviceBatches:
        """Copy the cohort's float16 images and labels (and lesion masks) to the device once."""
        return cls(cohort.images, cohort.labels, device, cohort.lesion_masks() if lesion else None)

    def lesion_batch(self, index: np.ndarray) -> torch.Tensor | None:
        """The lesion masks of the cases ``index`` on the device (None when not loaded)."""
        return None if self.lesion is None else _gather(self.lesion, index, self.device)

    def batches(self, slices: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(float16 images, labels)`` on the device for each batch of indices."""
        if not slices:
            return
        # one pinned, asynchronous host->device copy per epoch: a pageable copy synchronises the stream
        flat = torch.from_numpy(np.concatenate(slices).astype(np.int64))
        if self.device.type == "cuda":
            flat = flat.pin_memory()
        flat = flat.to(self.device, non_blocking=True)
        for index in torch.split(flat, [len(s) for s in slices]):
            yield self.images.index_select(0, index), self.labels.index_select(0, index)


class _CohortDataset(Dataset):
    """Map-style dataset over the host-memory cohort: ``(float16 image, label)`` per case."""

    def __init__(self, cohort: Cohort) -> None:
        self.images = cohort.images
        self.labels = torch.from_numpy(cohort.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class LoaderBatches:
    """DataLoader over host memory (pinned on CUDA) in the given batch order; batches copied per step."""

    def __init__(self, cohort: Cohort, device: torch.device, *, workers: int = 0, lesion: bool = False) -> None:
        self.dataset = _CohortDataset(cohort)
        self.device = device
        self.workers = workers
        self.lesion = cohort.lesion_masks() if lesion else None

    def lesion_batch(self, index: np.ndarray) -> torch.Tensor | None:
        """The lesion masks of the cases ``index``, copied to the device (None when not loaded)."""
        return None if self.lesion is None else _gather(self.lesion, index, self.device)

    def batches(self, slices: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(float16 images, labels)`` on the device for each batch of indices."""
        pin = self.device.type == "cuda"
        loader = DataLoader(
            self.dataset,
            batch_sampler=[idx.tolist() for idx in slices],
            num_workers=self.workers,
            pin_memory=pin,
            persistent_workers=False,
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=pin), y.to(self.device, non_blocking=pin)


def _gather(masks: torch.Tensor, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of ``masks`` on ``device``."""
    return masks.index_select(0, torch.as_tensor(np.asarray(index, np.int64), device=masks.device)).to(device)


def make_batches(cohort: Cohort, device: torch.device, *, on_device: bool, workers: int = 0, lesion: bool = False
                 ) -> DeviceBatches | LoaderBatches:
    """The GPU-resident source when ``on_device`` (the full profile), else the DataLoader source; with
    ``lesion`` it also serves each batch's tissue codes (``lesion_batch``; ``Cohort.lesion_masks``)."""
    if on_device:
        return DeviceBatches.from_cohort(cohort, device, lesion=lesion)
    return LoaderBatches(cohort, device, workers=workers, lesion=lesion)
