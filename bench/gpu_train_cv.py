#!/usr/bin/env python
"""GPU check of the real training path: ``train_cv`` with the full profile (DenseNet121, bf16,
channels_last_3d, cohort held on the GPU, GPU batch augmentation) on a synthetic preprocessed cohort.

Reports epoch wall time and volumes/s of whole epochs (training + validation + checkpoints), i.e. what
a user's run costs, next to bench/train.py's step-level numbers.

    python bench/gpu_train_cv.py --n 64 --grid 128 --folds 2 --epochs 3 --out /tmp/gpu_run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--grid", type=int, default=128)
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--model", default="densenet121")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_train_cv"))
    args = p.parse_args()

    from train_fixtures import write_cohort

    from gliomagrade.config import load_profile
    from gliomagrade.train import train_cv

    t0 = time.perf_counter()
    cohort = write_cohort(args.out / "cohort", n=args.n, grid=(args.grid,) * 3, hgg_fraction=0.75)
    t_write = time.perf_counter() - t0
    prof = load_profile("full").with_overrides(train={
        "model": args.model, "folds": args.folds, "epochs": args.epochs, "patience": args.epochs,
        "device": args.device, "val_fraction": 0.25})
    t0 = time.perf_counter()
    train_cv(cohort, prof, args.out / "run", progress=False)
    t_train = time.perf_counter() - t0
    metrics = json.loads((args.out / "run" / "metrics.json").read_text())
    logs = [json.loads(f.read_text()) for f in sorted((args.out / "run" / "folds").glob("*/log.json"))]
    epoch_s = [e["seconds"] for log in logs for e in (log["epochs"] if isinstance(log, dict) else log)]
    n_train = args.n * (args.folds - 1) / args.folds * 0.75
    out = {"device": args.device, "model": args.model, "grid": args.grid, "n": args.n, "folds": args.folds,
           "epochs": args.epochs, "write_cohort_s": round(t_write, 1), "train_cv_s": round(t_train, 1),
           "epoch_seconds": [round(s, 2) for s in epoch_s],
           "approx_train_vol_per_s_steady": round(n_train / min(epoch_s[1:] or epoch_s), 1),
           "auc": metrics["pooled"]["auc"]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
