"""Fixtures: fabricated CV run directories, produced the way the trainer produces them.

A logistic regression stands in for the CNN: per fold it is fitted on the training part, its
validation logits fit the temperature and the threshold (``gliomagrade.calibration``), and the
held-out fold gets calibrated probabilities. ``signal=0`` or ``shuffle=True`` gives a model with
nothing to learn, as a network trained on label-shuffled data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split

from gliomagrade.calibration import apply_temperature, choose_threshold, fit_temperature
from gliomagrade.config import load_profile
from gliomagrade.constants import BINARY_CLASSES, WHO_CLASSES
from gliomagrade.evaluate import evaluate_run


def _cohort(
    n: int, signal: float, n_features: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """WHO grades (II 30 %, III 25 %, IV 45 %) and features whose mean moves with the grade."""
    who = rng.choice([2, 3, 4], size=n, p=[0.30, 0.25, 0.45])
    x = rng.normal(size=(n, n_features))
    x[:, :3] += signal * (who[:, None] - 3.0)
    return who, x


def _logits(model: LogisticRegression, x: np.ndarray) -> np.ndarray:
    d = model.decision_function(x)
    return np.stack([np.zeros_like(d), d], axis=1) if d.ndim == 1 else d


def _cv_logits(
    x: np.ndarray, y: np.ndarray, folds: int, seed: int, c: float
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Out-of-fold logits, fold index and per-fold meta (temperature, threshold from validation)."""
    k = int(y.max()) + 1
    oof = np.zeros((y.size, k))
    fold_of = np.zeros(y.size, dtype=int)
    metas = []
    for f, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)):
        fit_idx, val_idx = train_test_split(tr, test_size=0.25, stratify=y[tr], random_state=seed + f)
        model = LogisticRegression(C=c, max_iter=2000).fit(x[fit_idx], y[fit_idx])
        t = fit_temperature(_logits(model, x[val_idx]), y[val_idx])
        meta = {"fold": f, "temperature": t, "best_epoch": 5 + f}
        if k == 2:
            val_prob = apply_temperature(_logits(model, x[val_idx]), t)[:, 1]
            meta["threshold"] = choose_threshold(y[val_idx], val_prob, "youden")
        oof[te], fold_of[te] = _logits(model, x[te]), f
        metas.append(meta)
    return oof, fold_of, metas


def make_run(
    root: Path,
    *,
    task: str = "binary",
    n: int = 150,
    signal: float = 1.5,
    shuffle: bool = False,
    folds: int = 5,
    seed: int = 0,
    n_features: int = 8,
    c: float = 1.0,
    extras: bool = True,
) -> Path:
    """Write ``oof.csv``, ``folds/<k>/{meta.json,log.csv}``, ``config.yaml`` (+ CAM, ablation) under ``root``."""
    rng = np.random.default_rng(seed)
    who, x = _cohort(n, signal, n_features, rng)
    names = BINARY_CLASSES if task == "binary" else WHO_CLASSES
    y = (who == 4).astype(int) if task == "binary" else who - 2
    if shuffle:
        y = rng.permutation(y)
    logits, fold_of, metas = _cv_logits(x, y, folds, seed, c)
    probs = np.zeros_like(logits)
    for f, meta in enumerate(metas):
        probs[fold_of == f] = apply_temperature(logits[fold_of == f], meta["temperature"])
    df = pd.DataFrame(
        {"subject_id": [f"SYN_{i:04d}" for i in range(n)], "fold": fold_of, "label": y, "who_grade": who}
    )
    for j, name in enumerate(names):
        df[f"logit_{name}"] = logits[:, j]
    for j, name in enumerate(names):
        df[f"prob_{name}"] = probs[:, j]
    root.mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "oof.csv", index=False)
    for meta in metas:
        d = root / "folds" / str(meta["fold"])
        d.mkdir(parents=True, exist_ok=True)
        meta.update(
            class_names=list(names),
            sequences=["t1", "t1ce", "t2", "flair"],
            task=task,
            val_metrics={"auc": 0.8, "loss": 0.5},
        )
        (d / "meta.json").write_text(json.dumps(meta))
        _training_log(d / "log.csv", rng)
    profile = load_profile("quick").with_overrides(train={"task": task})
    (root / "config.yaml").write_text(profile.to_yaml())
    if extras:
        _cam(root, df["subject_id"], df["label"], rng)
        if task == "binary":
            _ablation(root, df, x, y, folds, seed)
    return root


def _training_log(path: Path, rng: np.random.Generator, epochs: int = 12) -> None:
    e = np.arange(1, epochs + 1)
    train = 0.7 * np.exp(-e / 5) + 0.2 + rng.normal(0, 0.01, epochs)
    val = 0.6 * np.exp(-e / 6) + 0.3 + 0.01 * np.maximum(e - 8, 0) + rng.normal(0, 0.02, epochs)
    pd.DataFrame(
        {
            "epoch": e,
            "train_loss": train,
            "val_loss": val,
            "val_auc": 1 - val / 2,
            "lr": 1e-3 * 0.9**e,
            "seconds": 2.0,
        }
    ).to_csv(path, index=False)


def _cam(root: Path, subjects: pd.Series, labels: pd.Series, rng: np.random.Generator) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cam = root / "cam"
    cam.mkdir(exist_ok=True)
    pd.DataFrame(
        {
            "subject_id": subjects,
            "cam_mass_inside": rng.beta(5, 3, len(subjects)),
            "pointing_hit": rng.random(len(subjects)) < 0.8,
            "predicted": np.where(np.arange(len(subjects)) % 3 == 0, "LGG", "HGG"),
            "cam_class": "HGG",
            "label": labels,
            "evidence_t1ce": np.where(labels == 1, 2.0, -1.0),  # per-sequence encoders: each one's push
            "evidence_flair": 0.5,
            "dice_lesion": np.linspace(0.6, 0.8, len(subjects)),  # a lesion-gated or unet model's segmentation
            "dice_core": np.nan,  # absent from labels and prediction in every case
        }
    ).to_csv(cam / "cam_stats.csv", index=False)
    yy, xx = np.mgrid[-1:1:48j, -1:1:48j]
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.exp(-((xx - 0.2) ** 2 + yy**2) * 8), cmap="inferno")
    ax.axis("off")
    fig.savefig(cam / "SYN_0000.png")
    plt.close(fig)


def _ablation(root: Path, df: pd.DataFrame, x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> None:
    """Per-subject OOF scores of the full model and of two feature subsets ("sequence" ablations)."""
    rows = [
        pd.DataFrame(
            {
                "variant": "full",
                "subject_id": df["subject_id"],
                "prob_LGG": df["prob_LGG"],
                "prob_HGG": df["prob_HGG"],
            }
        )
    ]
    for name, cols in (("t1ce_only", [0, 3, 4]), ("no_signal", [5, 6, 7])):
        logits, _, _ = _cv_logits(x[:, cols], y, folds, seed, 1.0)
        p = apply_temperature(logits, 1.0)
        rows.append(
            pd.DataFrame(
                {"variant": name, "subject_id": df["subject_id"], "prob_LGG": p[:, 0], "prob_HGG": p[:, 1]}
            )
        )
    pd.concat(rows).to_csv(root / "ablation.csv", index=False)


# ------------------------------------------------------------------------------------------ fixtures
N_BOOT = 300
"""Bootstrap resamples in tests: enough for stable 95 % percentiles, cheap on 2 cores."""


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary run with signal (LGG vs HGG), CAM stats/montage and an ablation table."""
    return make_run(tmp_path_factory.mktemp("binary_run"), task="binary")


@pytest.fixture(scope="session")
def who_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-class WHO-grade run with signal, without CAM or ablation outputs."""
    return make_run(tmp_path_factory.mktemp("who_run"), task="who", extras=False)


@pytest.fixture(scope="session")
def binary_metrics_result(binary_run: Path) -> dict:
    return evaluate_run(binary_run, n_boot=N_BOOT)


@pytest.fixture(scope="session")
def who_metrics_result(who_run: Path) -> dict:
    return evaluate_run(who_run, n_boot=N_BOOT)


@pytest.fixture(scope="session")
def run_factory():
    """``make_run`` for tests that need a run of their own (shuffled labels, no extras...)."""
    return make_run


@pytest.fixture(scope="session")
def n_boot() -> int:
    return N_BOOT


@pytest.fixture
def bench_script():  # noqa: ANN201 - returns a loader of modules from files
    """Load ``bench/<name>.py`` as a module (the bench scripts are not part of the package)."""
    import importlib.util

    def load(name: str):  # noqa: ANN202
        path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
