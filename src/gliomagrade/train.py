"""Patient-level cross-validated training: ``train_cv`` -> ``fit_fold`` -> ``run_epoch`` -> ``train_step``.

Per outer fold: train on the training part with early stopping on the inner validation split, keep
the best epoch, fit the temperature and choose the operating threshold on inner validation (never on
the test fold), then predict the test fold once. Outputs (``out_dir``):
``config.yaml``, ``splits.json``, ``folds/<k>/{model.safetensors, meta.json, log.csv, log.json,
test_predictions.csv}``, ``oof.csv``, ``metrics.json`` and the report.

Resumable: after each epoch the full train state (weights, optimiser, scheduler, best weights, history)
is written atomically to ``folds/<k>/state.pt``; a rerun continues from there. A fold whose
``meta.json`` carries the same ``config_hash`` is finished and is not redone. Every epoch draws its
shuffle order, augmentation and dropout from seeds derived from ``(seed, fold, epoch)``, so a resumed
run repeats an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gliomagrade.augment import AugmentConfig
from gliomagrade.calibration import apply_temperature, choose_threshold, fit_temperature
from gliomagrade.cam_eval import evaluate_cams
from gliomagrade.checkpoint import META_FILE, load_train_state, save_checkpoint, save_train_state
from gliomagrade.config import Profile, TrainConfig
from gliomagrade.cv import FoldSplit, check_splits, make_splits, write_splits
from gliomagrade.data import (
    Cohort,
    DeviceBatches,
    LoaderBatches,
    batch_slices,
    epoch_order,
    load_cohort,
    make_batches,
)
from gliomagrade.engine import (
    amp_dtype,
    maybe_compile,
    predict_logits,
    prepare_model,
    prepare_pair,
    resolve_device,
    setup_backends,
    train_step,
)
from gliomagrade.errors import ConfigError
from gliomagrade.evaluate import evaluate_run
from gliomagrade.metrics import roc_auc
from gliomagrade.models import build_model
from gliomagrade.report import BAND_BOOT, write_report
from gliomagrade.transfer import build_pretrained

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
PREDICTIONS_FILE = "test_predictions.csv"
RUNTIME_FIELDS = (
    "device", "num_threads", "compile", "data_on_device", "channels_last", "loader_workers", "n_boot",
)
"""TrainConfig fields that change how fast, not what is trained: left out of the config hash."""

Batches = DeviceBatches | LoaderBatches


@dataclass(frozen=True)
class EpochRecord:
    """One row of ``log.csv``."""

    fold: int
    epoch: int
    train_loss: float
    val_loss: float
    val_auc: float
    lr: float
    seconds: float
    best: bool


@dataclass
class FoldResult:
    """A finished fold: where it lives, what was chosen on validation, and its test predictions."""

    fold: int
    fold_dir: Path
    meta: dict[str, Any]
    test_subjects: list[str]
    test_labels: np.ndarray
    test_logits: np.ndarray
    reused: bool = False


@dataclass
class RunResult:
    """A CV run: its folds, the OOF file and the evaluation (None until every fold is done)."""

    out_dir: Path
    folds: list[FoldResult] = field(default_factory=list)
    oof_path: Path | None = None
    metrics: dict[str, Any] | None = None


EpochCallback = Callable[[EpochRecord], None]


# ------------------------------------------------------------------------------------------- helpers


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, fold, epoch): independent streams, stable across runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (K * n_k)`` (1 for a balanced set) for the cross entropy."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise ConfigError(f"training part lacks class(es) {np.flatnonzero(counts == 0).tolist()}: counts {counts}")
    return torch.tensor(len(labels) / (num_classes * counts), dtype=torch.float32)


def config_hash(cfg: TrainConfig, split: FoldSplit, cohort: Cohort) -> str:
    """Hash of what determines a fold's model: the training config and the subjects of each part."""
    params = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RUNTIME_FIELDS}
    ids = cohort.subject_ids
    parts = {p: [[ids[i], int(cohort.labels[i])] for i in getattr(split, p)] for p in ("train", "val", "test")}
    payload = {"config": params, "fold": split.fold, "grid": cohort.grid, "parts": parts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def val_auc(logits: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of softmax scores (binary: positive class; multiclass: macro one-vs-rest); NaN if undefined."""
    prob = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    return float(roc_auc(labels, prob[:, 1] if prob.shape[1] == 2 else prob))


def _write_log(fold_dir: Path, history: Sequence[EpochRecord]) -> None:
    """``log.csv`` and ``log.json`` (per-epoch loss, val AUC, lr, time)."""
    rows = [asdict(r) for r in history]
    with (fold_dir / "log.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(EpochRecord.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
    clean = [{k: _finite(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    (fold_dir / "log.json").write_text(json.dumps(clean, indent=1, allow_nan=False))


def _finite(x: float) -> float | None:
    """NaN/inf -> None, so JSON files stay strict (an AUC is undefined on a one-class validation set)."""
    return float(x) if np.isfinite(x) else None


def _augment_config(cfg: TrainConfig) -> AugmentConfig | None:
    """The augmentation of a training config (None when ``augment`` is off)."""
    return AugmentConfig() if cfg.augment else None


# ---------------------------------------------------------------------------------------------- epoch


@dataclass
class _Trainer:
    """What one fold's epochs share: model (and its compiled callable), optimiser, loss, data."""

    cfg: TrainConfig
    model: torch.nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    weight: torch.Tensor | None
    source: Batches
    labels: np.ndarray
    device: torch.device

    @property
    def dtype(self) -> torch.dtype | None:
        return amp_dtype(self.device, self.cfg.amp)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(Class-weighted) cross entropy."""
        return F.cross_entropy(logits, y, weight=self.weight)


def run_epoch(tr: _Trainer, train_idx: np.ndarray, seed: int) -> float:
    """One pass over the training part (seeded order, augmentation, dropout); returns the mean loss."""
    cfg = tr.cfg
    torch.manual_seed(seed)
    order = epoch_order(tr.labels[train_idx], seed=seed, balanced=cfg.imbalance == "balanced_sampler")
    slices = batch_slices(train_idx[order], cfg.batch_size)
    aug, gen = _augment_config(cfg), torch.Generator().manual_seed(seed)
    tr.model.train()
    gated = cfg.lesion_loss > 0
    penalised = cfg.feature_l1 > 0 or gated or (cfg.sequence_loss > 0 and tr.model.sequence_groups > 1)
    forward = tr.model if penalised else tr.forward  # the penalties need the (uncompiled) feature maps
    losses = []
    for index, (x16, y) in zip(slices, tr.source.batches(slices), strict=True):
        masks = tr.source.lesion_batch(index) if gated else None
        x, masks = prepare_pair(x16, masks, channels_last=cfg.channels_last, augment=aug, generator=gen)
        losses.append(train_step(forward, tr.optimizer, tr.loss, x, y, dtype=tr.dtype, feature_l1=cfg.feature_l1,
                                 sequence_loss=cfg.sequence_loss, lesion=masks, lesion_loss=cfg.lesion_loss))
    tr.scheduler.step()
    return float(torch.stack(losses).mean())


def evaluate_epoch(tr: _Trainer, idx: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss (same weighting as training), logits and labels of the cases ``idx`` in eval mode."""
    tr.model.eval()
    slices = batch_slices(idx, 2 * tr.cfg.batch_size, min_last=1)
    logits, labels = predict_logits(tr.forward, tr.source.batches(slices), dtype=tr.dtype,
                                    channels_last=tr.cfg.channels_last)
    loss = float(tr.loss(logits, labels))
    return loss, logits.cpu().numpy().astype(np.float64), labels.cpu().numpy()


# ----------------------------------------------------------------------------------------------- fold


def _new_trainer(cohort: Cohort, split: FoldSplit, cfg: TrainConfig, source: Batches, device: torch.device
                 ) -> _Trainer:
    """Build the network, optimiser (AdamW), cosine schedule and loss weights of one fold."""
    n_in, n_out = len(cohort.sequences), len(cohort.class_names)
    if cfg.pretrained:  # strict: any missing/unexpected/mismatched key is an error, never a silent skip
        model, report = build_pretrained(cfg.model, n_in, n_out, cfg.pretrained, dropout=cfg.dropout,
                                         **cfg.model_kwargs)
        log.info("fold %d starts from pretrained weights: %s", split.fold, report.summary())
    else:
        model = build_model(cfg.model, n_in, n_out, dropout=cfg.dropout, **cfg.model_kwargs)
    model = prepare_model(model, device, channels_last=cfg.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    weight = None
    if cfg.imbalance == "weighted_loss":
        weight = class_weights(cohort.labels[split.train], len(cohort.class_names)).to(device)
    return _Trainer(cfg, model, maybe_compile(model, cfg.compile), opt, sched, weight, source, cohort.labels, device)


@dataclass
class _Progress:
    """Early-stopping state that a resumed run must get back exactly."""

    history: list[EpochRecord] = field(default_factory=list)
    best_score: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stopped: bool = False

    def to_extra(self, chash: str) -> dict[str, Any]:
        """Plain data for ``save_train_state`` (loadable with ``weights_only=True``)."""
        return {
            "config_hash": chash,
            "history": [asdict(r) for r in self.history],
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state or {},
            "stopped": self.stopped,
        }

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> _Progress:
        return cls(
            history=[EpochRecord(**r) for r in extra["history"]],
            best_score=float(extra["best_score"]),
            best_epoch=int(extra["best_epoch"]),
            bad_epochs=int(extra["bad_epochs"]),
            best_state=dict(extra["best_state"]) or None,
            stopped=bool(extra["stopped"]),
        )


def _resume(tr: _Trainer, state_path: Path, chash: str) -> tuple[int, _Progress]:
    """Next epoch and early-stopping state from ``state.pt`` when it belongs to this config, else a fresh start."""
    if not state_path.is_file():
        return 0, _Progress()
    probe = torch.load(state_path, map_location="cpu", weights_only=True)
    if probe.get("extra", {}).get("config_hash") != chash:
        log.warning("%s belongs to another configuration; starting this fold afresh", state_path)
        return 0, _Progress()
    info = load_train_state(state_path, tr.model, tr.optimizer, tr.scheduler, restore_rng=False,
                            map_location=tr.device)
    log.info("resuming %s after epoch %d", state_path.parent.name, info["epoch"])
    return info["epoch"] + 1, _Progress.from_extra(info["extra"])


def _improved(cfg: TrainConfig, score: float, best: float) -> bool:
    """Whether a monitored score (loss, or negated AUC) beats the best by ``min_delta``."""
    return bool(np.isfinite(score)) and score < best - cfg.min_delta


def fit_fold(
    cohort: Cohort,
    split: FoldSplit,
    cfg: TrainConfig,
    fold_dir: str | Path,
    *,
    source: Batches | None = None,
    device: torch.device | None = None,
    resume: bool = True,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = True,
) -> FoldResult:
    """Train one outer fold with early stopping, calibrate and threshold on inner validation, predict test."""
    fold_dir = Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    device = device or resolve_device(cfg.device)
    source = source or make_batches(cohort, device, on_device=cfg.data_on_device, workers=cfg.loader_workers,
                                    lesion=cfg.lesion_loss > 0)
    chash = config_hash(cfg, split, cohort)
    state_path = fold_dir / STATE_FILE
    torch.manual_seed(derived_seed(cfg.seed, split.fold))  # weight initialisation
    tr = _new_trainer(cohort, split, cfg, source, device)
    start, prog = _resume(tr, state_path, chash) if resume else (0, _Progress())
    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc=f"fold {split.fold}",
               unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        if prog.stopped:
            break
        t0 = time.perf_counter()
        lr = tr.optimizer.param_groups[0]["lr"]
        train_loss = run_epoch(tr, split.train, derived_seed(cfg.seed, split.fold, epoch))
        v_loss, v_logits, v_labels = evaluate_epoch(tr, split.val)
        auc = val_auc(v_logits, v_labels)
        score = v_loss if cfg.monitor == "val_loss" else -auc
        eligible = epoch + 1 >= min(cfg.min_epochs, cfg.epochs)  # warm-up epochs are never "best"
        best = eligible and _improved(cfg, score, prog.best_score)
        if best:
            prog.best_score, prog.best_epoch, prog.bad_epochs = score, epoch, 0
            prog.best_state = {k: v.detach().cpu().clone() for k, v in tr.model.state_dict().items()}
        elif eligible:
            prog.bad_epochs += 1
        prog.stopped = prog.bad_epochs >= cfg.patience
        rec = EpochRecord(split.fold, epoch, train_loss, v_loss, auc, lr, time.perf_counter() - t0, best)
        prog.history.append(rec)
        save_train_state(state_path, tr.model, tr.optimizer, tr.scheduler, epoch, extra=prog.to_extra(chash))
        _write_log(fold_dir, prog.history)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_loss=f"{v_loss:.3f}", val_auc=f"{auc:.3f}",
                        best=prog.best_epoch)
        for cb in callbacks:
            cb(rec)
    bar.close()
    if prog.best_state is None:
        raise ConfigError(f"fold {split.fold}: inner validation loss was never finite; no epoch to keep")
    tr.model.load_state_dict(prog.best_state)
    result = _finish_fold(tr, cohort, split, cfg, fold_dir, prog, chash)
    state_path.unlink(missing_ok=True)
    return result


def _finish_fold(tr: _Trainer, cohort: Cohort, split: FoldSplit, cfg: TrainConfig, fold_dir: Path,
                 prog: _Progress, chash: str) -> FoldResult:
    """Temperature and threshold from inner validation, test predictions, checkpoint + meta (written last)."""
    v_loss, v_logits, v_labels = evaluate_epoch(tr, split.val)
    temperature = fit_temperature(v_logits, v_labels)
    v_prob = apply_temperature(v_logits, temperature)
    threshold = None
    if len(cohort.class_names) == 2:
        threshold = choose_threshold(v_labels, v_prob[:, 1], cfg.threshold_rule, cfg.target_sensitivity)
    _, t_logits, t_labels = evaluate_epoch(tr, split.test)
    test_ids = [cohort.subject_ids[i] for i in split.test]
    _write_predictions(fold_dir / PREDICTIONS_FILE, test_ids, t_labels, t_logits)
    meta = {
        "fold": split.fold,
        "task": cohort.task,
        "class_names": list(cohort.class_names),
        "sequences": list(cohort.sequences),
        "grid": list(cohort.grid),
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": cfg.threshold_rule,
        "best_epoch": prog.best_epoch,
        "epochs_run": len(prog.history),
        "monitor": cfg.monitor,
        "val_metrics": {"n": len(split.val), "loss": _finite(v_loss), "auc": _finite(val_auc(v_logits, v_labels)),
                        "class_counts": np.bincount(v_labels, minlength=len(cohort.class_names)).tolist()},
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "config_hash": chash,
        "train_config": cfg.model_dump(mode="json"),
    }
    save_checkpoint(fold_dir, tr.model, meta)
    full_meta = json.loads((fold_dir / META_FILE).read_text())
    return FoldResult(split.fold, fold_dir, full_meta, test_ids, t_labels, t_logits)


def _write_predictions(path: Path, subjects: list[str], labels: np.ndarray, logits: np.ndarray) -> None:
    """Raw test-fold logits per subject (calibration is applied when the OOF table is built)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject_id", "label", *[f"logit_{k}" for k in range(logits.shape[1])]])
        for s, y, z in zip(subjects, labels, logits, strict=True):
            writer.writerow([s, int(y), *[repr(float(v)) for v in z]])


def load_finished_fold(fold_dir: Path, chash: str) -> FoldResult | None:
    """A finished fold's result when its ``meta.json`` carries ``chash`` (and its files are there)."""
    meta_path = fold_dir / "meta.json"
    pred_path = fold_dir / PREDICTIONS_FILE
    if not (meta_path.is_file() and pred_path.is_file() and (fold_dir / "model.safetensors").is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("config_hash") != chash:
        return None
    with pred_path.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return FoldResult(
        int(meta["fold"]),
        fold_dir,
        meta,
        [r[0] for r in rows],
        np.asarray([int(r[1]) for r in rows], dtype=np.int64),
        np.asarray([[float(v) for v in r[2:]] for r in rows], dtype=np.float64),
        reused=True,
    )


# ------------------------------------------------------------------------------------------------ run


def write_oof(path: Path, cohort: Cohort, folds: Sequence[FoldResult]) -> Path:
    """``oof.csv``: subject_id, fold, label, who_grade, logit_<class>, prob_<class> (fold-calibrated)."""
    names = cohort.class_names
    who = dict(zip(cohort.subject_ids, cohort.who_grades.tolist(), strict=True))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject_id", "fold", "label", "who_grade",
                         *[f"logit_{c}" for c in names], *[f"prob_{c}" for c in names]])
        for f in sorted(folds, key=lambda r: r.fold):
            prob = apply_temperature(f.test_logits, float(f.meta["temperature"]))
            for s, y, z, p in zip(f.test_subjects, f.test_labels, f.test_logits, prob, strict=True):
                w = who[s] if who[s] > 0 else ""
                writer.writerow([s, f.fold, int(y), w, *[f"{v:.6g}" for v in z], *[f"{v:.6g}" for v in p]])
    return path


def train_cv(
    cohort_dir: str | Path,
    profile: Profile,
    out_dir: str | Path,
    *,
    resume: bool = True,
    folds: Sequence[int] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = True,
) -> RunResult:
    """K-fold CV on a preprocessed cohort; evaluates and reports once every fold is done."""
    cfg = profile.train
    out = Path(out_dir)
    (out / "folds").mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    setup_backends(device, num_threads=cfg.num_threads)
    cohort = load_cohort(cohort_dir, cfg.sequences, cfg.task, progress=progress)
    splits = make_splits(cohort.labels, cohort.subject_ids, n_folds=cfg.folds, val_fraction=cfg.val_fraction,
                         seed=cfg.seed)
    check_splits(splits, cohort.labels, cohort.subject_ids, tolerance=0.15)
    write_splits(out / "splits.json", splits, cohort.subject_ids)
    (out / "config.yaml").write_text(profile.to_yaml())
    wanted = list(range(cfg.folds)) if folds is None else sorted(set(folds))
    bad = [k for k in wanted if not 0 <= k < cfg.folds]
    if bad:
        raise ConfigError(f"folds {bad} out of range for {cfg.folds}-fold CV (valid: 0..{cfg.folds - 1})")
    log.info("training %d fold(s) of %d on %d cases (%s, %s) on %s", len(wanted), cfg.folds, len(cohort),
             ",".join(cohort.sequences), cfg.task, device)
    source = make_batches(cohort, device, on_device=cfg.data_on_device, workers=cfg.loader_workers,
                          lesion=cfg.lesion_loss > 0)
    result = RunResult(out)
    for split in splits:
        fold_dir = out / "folds" / str(split.fold)
        done = load_finished_fold(fold_dir, config_hash(cfg, split, cohort)) if resume else None
        if split.fold not in wanted:
            if done:
                result.folds.append(done)
            continue
        if done:
            log.info("fold %d already finished (same config); reusing it", split.fold)
            result.folds.append(done)
            continue
        result.folds.append(fit_fold(cohort, split, cfg, fold_dir, source=source, device=device, resume=resume,
                                     callbacks=callbacks, progress=progress))
    if len(result.folds) < cfg.folds:
        log.info("%d of %d folds finished; OOF evaluation waits for the rest", len(result.folds), cfg.folds)
        return result
    result.oof_path = write_oof(out / "oof.csv", cohort, result.folds)
    evaluate_cams(out, cohort_dir)
    result.metrics = evaluate_run(out, n_boot=cfg.n_boot, seed=cfg.seed)
    write_report(out, metrics=result.metrics, seed=cfg.seed, band_boot=min(cfg.n_boot, BAND_BOOT))
    return result
