"""Preprocessing benchmark: seconds per stage on one core, cases/minute on the machine, and quality.

Speed: a BraTS-sized case (240x240x155, 1 mm, skull, 12 deg / 12 mm pose) through ``preprocess_case``
with one ITK thread, stage by stage, without and with N4; the write stage (npz + thumbnail) too.
Throughput and quality: a synthetic cohort from ``gliomagrade.synth`` (skull kept, random pose up to
15 deg / 15 mm, motion between sequences, anisotropic slices up to 1x1x3 mm, bias field) through
``preprocess_cohort`` on every core: brain-mask Dice against the generator's mask, error of the
recovered template->t1ce pose and of the co-registration against the generator's transforms.
Prints markdown tables for BENCHMARKS.md. Run: ``.venv/bin/python bench/preprocess.py [--cases 8]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from gliomagrade.config import load_profile
from gliomagrade.parallel import default_workers
from gliomagrade.preprocess import preprocess_case, preprocess_cohort
from gliomagrade.preprocess.phantom import make_phantom, pose_error
from gliomagrade.preprocess.qc import case_thumbnail

STAGES = ("validate", "n4", "coarse", "coregister", "template", "resample", "skull_strip", "normalise")


def stage_timing(profile: str, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per stage for one BraTS-sized case on one thread, N4 off and on."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    case = make_phantom(rotation_deg=(12, -8, 10), translation_mm=(12, -10, 8), size=(240, 240, 155),
                        spacing=(1.0, 1.0, 1.0), skull=True, bias=0.2, seed=3)
    cfg = load_profile(profile).preprocess
    preprocess_case(case.images, cfg)  # warm the template caches (once per process in a worker)
    out: dict[str, dict[str, float]] = {}
    for n4 in (False, True):
        runs, cpu = [], []
        for _ in range(repeats if not n4 else 1):
            start_cpu = time.process_time()
            result = preprocess_case(case.images, cfg.model_copy(update={"n4": n4}), brain_mask=case.brain_mask)
            cpu.append(time.process_time() - start_cpu)
            runs.append(result)
        times = {s: statistics.median(r.qc.get(f"time_{s}_s", 0.0) for r in runs) for s in STAGES}
        times["cpu"] = statistics.median(cpu)  # CPU seconds: robust to other processes on a shared machine
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(Path(tmp) / "c.npz", image=result.image, mask=result.mask)
            case_thumbnail(result, Path(tmp) / "c.png")
        times["write"] = time.perf_counter() - start
        times["total"] = sum(times.values())
        times["dice"] = result.qc["brain_dice"]
        times["pose_mm"], times["pose_deg"] = pose_error(result.geometry.template_to_reference(), case.pose)
        out["n4" if n4 else "no_n4"] = times
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(0)
    return out


def cohort_quality(n: int, profile: str, workers: int, root: Path, resolution: float
                   ) -> tuple[float, list[dict], int]:
    """Write a synthetic cohort with skulls and run the cohort step; (cases/min, qc rows, failures)."""
    from gliomagrade.synth import SynthParams, write_cohort

    params = SynthParams(skull_prob=1.0, misregistration_prob=1.0, resolution=resolution)
    cohort = write_cohort(root / "raw", n, seed=11, layout="brats2020", workers=workers, params=params,
                          progress=False)
    cfg = load_profile(profile).preprocess
    start = time.perf_counter()
    summary = preprocess_cohort(cohort, root / "pre", cfg, workers=workers)
    minutes = (time.perf_counter() - start) / 60.0
    rows = [r.qc for r in summary.results if r.status == "done"]
    return len(summary.results) / minutes, rows, len(summary.failed)


def _stats(values: list[float]) -> str:
    return f"{np.mean(values):.3f} (min {np.min(values):.3f}, max {np.max(values):.3f})" if values else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="synthetic cases for throughput and quality")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--resolution", type=float, default=1.0, help="synthetic cohort voxel size (mm)")
    args = parser.parse_args()
    workers = args.workers or default_workers()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, profile {args.profile}\n")

    timing = stage_timing(args.profile, args.repeats)
    print("| stage (1 core, 240x240x155 1 mm, skull) | s, no N4 | s, N4 |")
    print("|---|---|---|")
    for stage in (*STAGES, "write", "total"):
        print(f"| {stage} | {timing['no_n4'][stage]:.2f} | {timing['n4'][stage]:.2f} |")
    print(f"| CPU seconds of preprocess_case (1 thread) | {timing['no_n4']['cpu']:.2f} | {timing['n4']['cpu']:.2f} |")
    for key in ("dice", "pose_mm", "pose_deg"):
        print(f"| {key} | {timing['no_n4'][key]:.3f} | {timing['n4'][key]:.3f} |")

    with tempfile.TemporaryDirectory() as tmp:
        rate, rows, failed = cohort_quality(args.cases, args.profile, workers, Path(tmp), args.resolution)
    print(f"\n| synthetic cohort ({args.cases} cases, skull, pose <= 15 deg / 15 mm, motion) | value |")
    print("|---|---|")
    print(f"| cases/minute ({workers} workers, incl. reading and writing) | {rate:.1f} |")
    print(f"| failed cases | {failed} |")
    print(f"| brain-mask Dice vs truth | {_stats([r['brain_dice'] for r in rows if 'brain_dice' in r])} |")
    print(f"| pose error mm | {_stats([r['pose_error_mm'] for r in rows if 'pose_error_mm' in r])} |")
    print(f"| pose error deg | {_stats([r['pose_error_deg'] for r in rows if 'pose_error_deg' in r])} |")
    coreg = [v for r in rows for k, v in r.items() if k.startswith("coreg_error_mm_")]
    print(f"| co-registration error mm (t1, t2, flair) | {_stats(coreg)} |")
    print(f"| flagged registration_suspect | {sum(bool(r.get('registration_suspect')) for r in rows)} |")


if __name__ == "__main__":
    main()
