#!/usr/bin/env python
"""Training throughput (volumes/s): our loop vs the bare model vs a MONAI-tutorial-style loop, in one run.

1. model only: random tensors already on the device, no data handling, no augmentation (upper bound).
2. ours (end to end): a synthetic cohort held on the device as float16 (``DeviceBatches``), the
   epoch order and batch gather of ``gliomagrade.data``, batch augmentation on the device
   (``gliomagrade.augment``: flip, rotation+zoom, gamma/bias field, intensity, noise), then the same
   train step (bf16 autocast + channels_last_3d on CUDA).
3. tutorial (baseline): MONAI ``Dataset`` + ``DataLoader`` (``--workers`` processes) with the equivalent
   MONAI CPU dictionary transforms per case, pinned host->device copy, then the same train step, so
   the ratio isolates the data path. Its cases sit in host memory (no file reads): the baseline is
   favoured, not handicapped.

Needs only this repository, torch and MONAI (no files, no install: ``src/`` is put on the path).
Prints a markdown table, a JSON line, and a projection of a 5-fold CV of 369 cases x 100 epochs.

    python bench/train.py --model densenet121 --grid 128 --batch 8 --n-cases 64 --steps 30 --device cuda --workers 8
    python bench/train.py --model smallcnn --grid 32 --batch 2 --n-cases 8 --steps 3 --device cpu --workers 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gliomagrade.augment import AugmentConfig  # noqa: E402
from gliomagrade.data import DeviceBatches, batch_slices, epoch_order  # noqa: E402
from gliomagrade.engine import (  # noqa: E402
    amp_dtype,
    autocast,
    prepare_batch,
    prepare_model,
    setup_backends,
    train_step,
)

CHANNELS = 4
CV_CASES, CV_FOLDS, CV_EPOCHS, VAL_FRACTION = 369, 5, 100, 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="densenet121")
    p.add_argument("--grid", type=int, default=128, help="cubic grid edge (voxels)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n-cases", type=int, default=64, help="synthetic cohort size (held on the device)")
    p.add_argument("--steps", type=int, default=30, help="timed steps for model-only and ours")
    p.add_argument("--baseline-steps", type=int, default=0, help="timed steps of the tutorial loop (0: --steps)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotuning, workers)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the tutorial loop")
    p.add_argument("--no-amp", action="store_true", help="fp32/TF32 instead of bf16 autocast (CUDA)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (eager if it fails)")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls after ``warmup`` untimed ones (device synchronised at both ends)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - t0


class Net:
    """A fresh model + optimiser + loss; ``forward`` is the compiled callable when compiling worked."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        from gliomagrade.models import build_model

        torch.manual_seed(args.seed)
        self.model = prepare_model(build_model(args.model, CHANNELS, 2), device,
                                   channels_last=not args.no_channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.dtype = amp_dtype(device, not args.no_amp)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        self.compiled = False
        self.want_compile = args.compile

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One train step; on the first call with --compile, fall back to eager if compiling fails."""
        if self.want_compile:
            self.want_compile = False
            try:
                compiled = torch.compile(self.model)
                out = train_step(compiled, self.optimizer, torch.nn.functional.cross_entropy, x, y, dtype=self.dtype)
                self.forward, self.compiled = compiled, True
                return out
            except Exception as exc:  # noqa: BLE001 - an optimisation; eager is the reference
                print(f"# torch.compile unavailable or failed ({type(exc).__name__}: {exc}); running eagerly",
                      file=sys.stderr)
        return train_step(self.forward, self.optimizer, torch.nn.functional.cross_entropy, x, y, dtype=self.dtype)


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def synthetic_cohort(n: int, grid: int, device: torch.device, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """float16 ``n x 4 x G^3`` on the device: noise inside a brain-like ellipsoid, 0 outside; labels 0/1."""
    gen = torch.Generator(device=device).manual_seed(seed)
    axis = torch.linspace(-1, 1, grid, device=device)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    brain = (z**2 / 0.8 + y**2 + x**2 / 0.7) < 0.9
    images = torch.empty((n, CHANNELS, grid, grid, grid), dtype=torch.float16, device=device)
    for i in range(n):  # one case at a time: no float32 copy of the whole cohort
        case = torch.randn((CHANNELS, grid, grid, grid), generator=gen, device=device)
        images[i] = torch.where(brain, case, 0).half()
    labels = np.random.default_rng(seed).integers(0, 2, n)
    return images, labels


def bench_model_only(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    net = Net(args, device)
    g = args.grid
    x = torch.randn((args.batch, CHANNELS, g, g, g), device=device)
    if device.type == "cuda" and not args.no_channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 2, (args.batch,), device=device)
    sec = timed(lambda: net.step(x, y), args.steps, args.warmup, device)
    infer = bench_inference(net, x, args, device)
    out = {"seconds": sec, "steps": args.steps, "compiled": net.compiled, "infer_vol_s": infer}
    return out


@torch.no_grad()
def bench_inference(net: Net, x: torch.Tensor, args: argparse.Namespace, device: torch.device) -> float:
    """Eval-mode volumes/s of the same net (for the projection's per-epoch validation pass)."""
    net.model.eval()

    def step() -> None:
        with autocast(device, net.dtype):
            net.forward(x)

    sec = timed(step, args.steps, args.warmup, device)
    net.model.train()
    return args.steps * x.shape[0] / sec


def bench_ours(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The training loop's data path: device-resident cohort, seeded epoch order, device augmentation."""
    images, labels = synthetic_cohort(args.n_cases, args.grid, device, args.seed)
    source = DeviceBatches(images, labels, device)  # already on the device: no copy
    net = Net(args, device)
    aug, gen = AugmentConfig(), torch.Generator().manual_seed(args.seed)

    def batches() -> Any:
        for epoch in itertools.count():
            order = epoch_order(labels, seed=args.seed + epoch, balanced=False)
            yield from source.batches(batch_slices(order, args.batch, min_last=args.batch))

    it = batches()

    def step() -> None:
        x16, y = next(it)
        x = prepare_batch(x16, channels_last=not args.no_channels_last, augment=aug, generator=gen)
        net.step(x, y)

    sec = timed(step, args.steps, args.warmup, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"seconds": sec, "steps": args.steps, "cohort_gib": args.n_cases * CHANNELS * args.grid**3 * 2 / 2**30,
            "peak_gib": peak}


def tutorial_transforms(seed: int) -> Any:
    """MONAI dictionary transforms equivalent to our augmentation, as a tutorial would compose them."""
    from monai import transforms as T

    keys = ["image"]
    rot = math.radians(10)
    return T.Compose([
        T.CastToTyped(keys, dtype=np.float32),
        T.RandFlipd(keys, prob=0.5, spatial_axis=2),
        T.RandRotated(keys, range_x=rot, range_y=rot, range_z=rot, prob=0.5, padding_mode="zeros"),
        T.RandZoomd(keys, min_zoom=0.9, max_zoom=1.1, prob=0.5, padding_mode="constant"),
        T.RandAdjustContrastd(keys, prob=0.3, gamma=(0.74, 1.35)),
        T.RandBiasFieldd(keys, prob=0.3, degree=2, coeff_range=(0.0, 0.3)),
        T.RandScaleIntensityd(keys, factors=0.1, prob=0.5),
        T.RandShiftIntensityd(keys, offsets=0.1, prob=0.5),
        T.RandGaussianNoised(keys, prob=0.3, std=0.1),
        T.EnsureTyped(keys + ["label"], track_meta=False),
    ]).set_random_state(seed=seed)


def bench_tutorial(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """MONAI Dataset/DataLoader with CPU transforms per case, then the same train step."""
    from monai.data import DataLoader, Dataset

    images, labels = synthetic_cohort(args.n_cases, args.grid, torch.device("cpu"), args.seed)
    data = [{"image": images[i].numpy(), "label": int(labels[i])} for i in range(args.n_cases)]
    loader = DataLoader(Dataset(data, transform=tutorial_transforms(args.seed)), batch_size=args.batch,
                        shuffle=True, drop_last=True, num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)
    net = Net(args, device)
    it = itertools.chain.from_iterable(itertools.repeat(loader))
    non_blocking = device.type == "cuda"

    def step() -> None:
        batch = next(it)
        x = batch["image"].to(device, non_blocking=non_blocking)
        if device.type == "cuda" and not args.no_channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        net.step(x, batch["label"].to(device, non_blocking=non_blocking).long())

    steps = args.baseline_steps or args.steps
    sec = timed(step, steps, args.warmup, device)
    return {"seconds": sec, "steps": steps, "workers": args.workers}


def device_checks(device: torch.device, seed: int) -> dict[str, Any]:
    """Correctness on the device before timing: GPU augmentation == CPU augmentation (same recorded
    parameters, noise off; TF32 in the bias field allows small differences), exact flip, batch gather."""
    import dataclasses

    from gliomagrade.augment import apply_params, sample_params

    if device.type != "cuda":
        return {"skipped": "cpu run"}
    try:
        x = synthetic_cohort(3, 24, torch.device("cpu"), seed)[0]
        p = sample_params(x.shape, AugmentConfig(), torch.Generator().manual_seed(seed))
        p = dataclasses.replace(p, noise_std=torch.zeros_like(p.noise_std))
        diff = float((apply_params(x.to(device), p).cpu() - apply_params(x, p)).abs().max())
        flip = dataclasses.replace(p, flip=torch.ones_like(p.flip), spatial=torch.zeros_like(p.spatial),
                                   gamma=torch.ones_like(p.gamma), bias=torch.zeros_like(p.bias),
                                   scale=torch.ones_like(p.scale), shift=torch.zeros_like(p.shift))
        flip_ok = torch.equal(apply_params(x.to(device), flip).cpu(), x.float().flip(-1))
        src = DeviceBatches(x, np.array([0, 1, 0]), device)
        (xb, yb), = src.batches([np.array([2, 0])])
        gather_ok = torch.equal(xb.cpu(), x[[2, 0]]) and yb.tolist() == [0, 0]
        return {"augment_gpu_vs_cpu_max_abs": diff, "flip_exact": flip_ok, "gather_exact": gather_ok,
                "ok": diff < 0.05 and flip_ok and gather_ok}
    except Exception as exc:  # noqa: BLE001 - report, then time anyway
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def projection(e2e_vol_s: float, infer_vol_s: float) -> dict[str, float]:
    """Hours for a 5-fold CV of 369 cases x 100 epochs: train part at e2e speed + inner-val pass per epoch."""
    test = CV_CASES / CV_FOLDS
    val = (CV_CASES - test) * VAL_FRACTION
    train = CV_CASES - test - val
    per_epoch = train / e2e_vol_s + val / infer_vol_s
    hours = CV_FOLDS * CV_EPOCHS * per_epoch / 3600
    return {"train_cases_per_fold": round(train, 1), "val_cases_per_fold": round(val, 1),
            "seconds_per_epoch": per_epoch, "hours_total": hours}


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "cpus": torch.get_num_threads()}
    try:
        import monai

        env["monai"] = monai.__version__
    except ImportError:
        env["monai"] = None
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda but torch {torch.__version__} sees no CUDA GPU")
    device = torch.device(args.device)
    setup_backends(device)
    amp = amp_dtype(device, not args.no_amp)
    cfg = {k: getattr(args, k) for k in ("model", "grid", "batch", "n_cases", "steps", "workers", "compile")}
    cfg.update(precision=str(amp).replace("torch.", "") if amp else ("tf32" if device.type == "cuda" else "fp32"),
               channels_last=device.type == "cuda" and not args.no_channels_last)
    print(f"# bench/train.py {cfg} on {environment(device)}", file=sys.stderr, flush=True)

    checks = device_checks(device, args.seed)
    print(f"# device checks: {checks}", file=sys.stderr, flush=True)
    results: dict[str, dict[str, Any]] = {}
    benches = {"model_only": bench_model_only, "ours": bench_ours, "tutorial": bench_tutorial}
    for name, fn in benches.items():
        if name == "tutorial" and args.skip_baseline:
            continue
        results[name] = fn(args, device)  # its tensors are freed when it returns
        free(device)
        print(f"# {name}: {results[name]['steps'] * args.batch / results[name]['seconds']:.1f} vol/s",
              file=sys.stderr, flush=True)
    for r in results.values():
        r["vol_s"] = r["steps"] * args.batch / r["seconds"]
        r["ms_per_step"] = 1000 * r["seconds"] / r["steps"]
    mo, ours = results["model_only"]["vol_s"], results["ours"]["vol_s"]
    ratios = {"ours_vs_model_only": ours / mo}
    if "tutorial" in results:
        ratios["ours_vs_tutorial"] = ours / results["tutorial"]["vol_s"]
    report = {"config": cfg, "environment": environment(device), "checks": checks, "results": results,
              "ratios": ratios,
              "goals": {"ours_vs_model_only>=0.9": ratios["ours_vs_model_only"] >= 0.9,
                        "ours_vs_tutorial>=3": ratios.get("ours_vs_tutorial", float("nan")) >= 3},
              "projection_5fold_369x100": projection(ours, results["model_only"]["infer_vol_s"])}
    print_markdown(report)
    print(json.dumps(report, default=float))
    return report


def print_markdown(report: dict[str, Any]) -> None:
    c, r = report["config"], report["results"]
    print(f"\n### Training throughput: {c['model']}, 4x{c['grid']}^3, batch {c['batch']}, {c['precision']}, "
          f"channels_last={c['channels_last']} on {report['environment'].get('gpu') or report['environment'].get('cpu')}\n")
    print("| loop | vol/s | ms/step | vs model only |")
    print("|---|---:|---:|---:|")
    names = {"model_only": "model only (random tensors on device)", "ours": "ours end-to-end (device cohort + aug)",
             "tutorial": f"MONAI tutorial-style (DataLoader, {c['workers']} workers, CPU transforms)"}
    mo = r["model_only"]["vol_s"]
    for key, name in names.items():
        if key in r:
            print(f"| {name} | {r[key]['vol_s']:.1f} | {r[key]['ms_per_step']:.1f} | {r[key]['vol_s'] / mo:.2f} |")
    ratios = report["ratios"]
    print(f"\nours / model only = {ratios['ours_vs_model_only']:.2f} (goal >= 0.90)"
          + (f"; ours / tutorial = {ratios['ours_vs_tutorial']:.2f} (goal >= 3)" if "ours_vs_tutorial" in ratios else ""))
    p = report["projection_5fold_369x100"]
    print(f"projection: 5-fold CV, 369 cases x 100 epochs ({p['train_cases_per_fold']} train + "
          f"{p['val_cases_per_fold']} val per fold-epoch): {p['hours_total']:.2f} h "
          f"(inference {r['model_only']['infer_vol_s']:.0f} vol/s)\n")


if __name__ == "__main__":
    main()
