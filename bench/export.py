#!/usr/bin/env python
"""Inference latency of one case: onnxruntime (the exported, parity-checked graph) vs PyTorch eager, CPU.

Both run the same network in the same process on the same input (batch 1, logits + feature maps),
so the ratio is meaningful even on a shared machine. Cases: ``quick`` = smallcnn 4x48^3 (CPU profile)
and ``full`` = densenet121 4x128^3. Prints a markdown table and a JSON line.

    python bench/export.py --cases quick,full --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gliomagrade.export import export_onnx, ort_session  # noqa: E402
from gliomagrade.models import build_model  # noqa: E402

CASES = {"quick": ("smallcnn", 48), "full": ("densenet121", 128)}


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(case: str, repeats: int, threads: int) -> dict[str, object]:
    """Export one case's model, then time eager and onnxruntime on the same batch-1 input."""
    name, grid = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, 4, 2).eval()
    shape = (4, grid, grid, grid)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = export_onnx(model, tmp, model_name=f"bench-{case}", input_shape=shape)
        export_s = time.perf_counter() - start
        session = ort_session(result.onnx_path, threads=threads)
        x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
        xt = torch.from_numpy(x)

        def eager() -> object:
            with torch.no_grad():
                return model.forward_with_features(xt)

        eager_s = median_seconds(eager, repeats)
        ort_s = median_seconds(lambda: session.run(["logits", "features"], {"image": x}), repeats)
        onnx_mb = result.onnx_path.stat().st_size / 2**20
    return {
        "case": case, "model": name, "input": f"1x4x{grid}^3", "eager_s": eager_s, "onnxruntime_s": ort_s,
        "speedup": eager_s / ort_s, "export_and_parity_s": export_s, "max_abs_diff": result.max_abs_diff,
        "onnx_mb": onnx_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="quick,full", help="comma list of: " + ", ".join(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench_case(c.strip(), args.repeats, args.threads) for c in args.cases.split(",") if c.strip()]
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, {args.threads} threads, "
          f"torch {torch.__version__}, median of {args.repeats}\n")
    print("| case | model | input | PyTorch eager (s) | onnxruntime (s) | eager / ORT | export+parity (s) | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['model']} | {r['input']} | {r['eager_s']:.3f} | {r['onnxruntime_s']:.3f} | "
              f"{r['speedup']:.2f}x | {r['export_and_parity_s']:.1f} | {r['max_abs_diff']:.1e} |")
    print(json.dumps({"bench": "export", "rows": rows}))


if __name__ == "__main__":
    main()
