"""Serving benchmark: one BraTS-sized case (4 x 240x240x155, 1 mm) through ``glioma serve``, per profile.

Reports, as markdown tables:
- per-stage p50 (decode, preprocess, transfer, inference, CAM, encode) for the quick and full profile
  grids; ``transfer`` = the transformer's predictor round trip minus the predictor's own ``session.run``
  time (from its ``gliomagrade_predictor_inference_seconds``);
- the predictor's onnxruntime vs PyTorch eager (same weights, batch 1) and their ratio;
- throughput and client-side p50/p95 at 1, 4 and 8 concurrent clients;
- decoding the predictor's reply (a 5-fold ensemble's features) with KServe's parser vs ``serving.v2rest``;
- RSS of both server processes before and after the load.

The networks are untrained (the profile's architecture, random weights): speed does not depend on the
weights. Run: ``.venv/bin/python bench/serve.py [--profiles quick,full] [--requests 5] [--duration 30]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from gliomagrade.constants import SEQUENCES

MODEL = "glioma-bench"


def write_case(folder: Path) -> dict[str, Path]:
    """A BraTS-sized synthetic case (template anatomy with a tumour) as .nii.gz files."""
    import SimpleITK as sitk

    from gliomagrade.preprocess.phantom import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    images = make_phantom(size=(240, 240, 155), spacing=(1.0, 1.0, 1.0), seed=1).images
    paths = {}
    for seq in SEQUENCES:
        paths[seq] = folder / f"bench_{seq}.nii.gz"
        sitk.WriteImage(images[seq], str(paths[seq]), useCompression=True)
    return paths


def publish(profile_name: str, work: Path) -> tuple[str, Any, Path, tuple[int, ...]]:
    """Export the profile's network (untrained) and publish + promote it in a local registry."""
    import torch

    from gliomagrade.config import load_profile
    from gliomagrade.export import export_onnx
    from gliomagrade.models import build_model
    from gliomagrade.registry import Registry
    from gliomagrade.store import open_store

    profile = load_profile(profile_name)
    grid = tuple(profile.preprocess.grid)
    torch.manual_seed(0)
    net = build_model(profile.train.model, 4, 2, **profile.train.model_kwargs).eval()
    out = work / f"export-{profile_name}"
    result = export_onnx(net, out, model_name=MODEL, input_shape=(4, *grid), class_names=["LGG", "HGG"])
    manifest = {
        "class_names": ["LGG", "HGG"],
        "input": {"name": "image", "dtype": "FP32", "shape": [-1, 4, *grid]},
        "outputs": [{"name": "logits", "dtype": "FP32", "shape": [-1, 2]},
                    {"name": "features", "dtype": "FP32", "shape": [-1, *result.feature_shape]}],
        "temperature": 1.0,
        "head": {"in_features": result.feature_shape[0], "num_classes": 2, "file": f"{MODEL}/1/head.json"},
        "preprocess": profile.preprocess.model_dump(mode="json"),
    }
    store = work / f"store-{profile_name}"
    registry = Registry(open_store(str(store)), MODEL)
    registry.promote(registry.publish(out, manifest).version, "benchmark")
    return str(store), net, result.onnx_path, grid


def predictor_seconds(url: str) -> tuple[float, float]:
    """(sum, count) of the predictor's onnxruntime time histogram."""
    text = httpx.get(f"{url}/metrics").text
    total = re.search(r'gliomagrade_predictor_inference_seconds_sum\{[^}]*\} ([0-9.e+-]+)', text)
    count = re.search(r'gliomagrade_predictor_inference_seconds_count\{[^}]*\} ([0-9.e+-]+)', text)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def stage_p50(transformer: str, predictor: str, files: dict[str, Path], n: int) -> dict[str, float]:
    """Median per-stage milliseconds over ``n`` sequential requests (CAM as NIfTI)."""
    from gliomagrade.serving.client import predict_case

    rows = []
    for _ in range(n):
        before = predictor_seconds(predictor)
        start = time.perf_counter()
        result = predict_case(transformer, MODEL, files, cam="nifti")
        total = (time.perf_counter() - start) * 1000
        after = predictor_seconds(predictor)
        inference = (after[0] - before[0]) * 1000 / max(after[1] - before[1], 1)
        t = result["timings_ms"]
        rows.append({"decode": t["decode"], "preprocess": t["preprocess"],
                     "transfer": t["predict"] - inference, "inference": inference, "cam": t.get("cam", 0.0),
                     "encode": t.get("encode", 0.0), "client total": total})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def ort_vs_torch(net: Any, onnx_path: Path, grid: tuple[int, ...], n: int = 5) -> tuple[float, float]:
    """p50 ms of onnxruntime and PyTorch eager on the same batch-1 input."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).normal(size=(1, 4, *grid)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    session.run(None, {"image": x})

    def timed(fn: Any) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    t_ort = timed(lambda: session.run(None, {"image": x}))
    with torch.inference_mode():
        xt = torch.from_numpy(x)
        net.forward_with_features(xt)
        t_torch = timed(lambda: net.forward_with_features(xt))
    return t_ort, t_torch


def decode_vs_kserve(feature_shape: tuple[int, ...], folds: int = 5, n: int = 5) -> dict[str, float]:
    """p50 ms to decode a predictor reply (logits + a ``folds``-model ensemble's features) with KServe's
    ``InferResponse.from_bytes`` (the baseline) and with ``serving.v2rest.parse_response``."""
    from kserve import InferOutput, InferResponse

    from gliomagrade.serving.v2rest import parse_response

    shape = (1, feature_shape[0] * folds, *feature_shape[1:])
    outputs = []
    for name, array in (("logits", np.zeros((1, 2), np.float32)), ("features", np.ones(shape, np.float32))):
        out = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
        out.set_data_from_numpy(array, binary_data=True)
        outputs.append(out)
    body, json_length = InferResponse(response_id="bench", model_name=MODEL, infer_outputs=outputs,
                                      use_binary_outputs=True).to_rest()

    def timed(fn: Any) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn().get_output_by_name("features").as_numpy()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    return {"folds": folds, "mb": len(body) / 2**20, "kserve_ms": timed(lambda: InferResponse.from_bytes(body, json_length)),
            "v2rest_ms": timed(lambda: parse_response(body, json_length))}


def load(transformer: str, files: dict[str, Path], clients: int, duration: float) -> dict[str, float]:
    """Closed-loop load: ``clients`` threads posting the case for ``duration`` seconds."""
    from gliomagrade.serving.client import v2_binary_body

    body, headers = v2_binary_body({s: p.read_bytes() for s, p in files.items()}, "nifti")
    url = f"{transformer}/v2/models/{MODEL}/infer"

    def client(_: int) -> list[tuple[int, float]]:
        out = []
        deadline = time.monotonic() + duration
        with httpx.Client(timeout=600) as http:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                code = http.post(url, content=body, headers=headers).status_code
                out.append((code, (time.perf_counter() - start) * 1000))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for chunk in pool.map(client, range(clients)) for r in chunk]
    wall = time.perf_counter() - start
    ok = [ms for code, ms in results if code == 200]
    return {"clients": clients, "requests": len(results), "errors": len(results) - len(ok),
            "throughput": len(ok) / wall, "p50": float(np.percentile(ok, 50)) if ok else float("nan"),
            "p95": float(np.percentile(ok, 95)) if ok else float("nan")}


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def bench_profile(name: str, files: dict[str, Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Everything for one profile: stages, ORT vs torch, load, RSS."""
    from gliomagrade.serving.launcher import Stack, StackConfig

    store, net, onnx_path, grid = publish(name, work)
    ports = [_free_port() for _ in range(4)]
    stack = Stack(StackConfig(store=store, model=MODEL, http_port=ports[0], grpc_port=ports[1],
                              predictor_http_port=ports[2], predictor_grpc_port=ports[3], timeout_s=600,
                              max_in_flight=max(args.clients)), work / f"logs-{name}")
    stack.start(ready_timeout_s=600)
    try:
        t_url, p_url = stack.url("transformer"), stack.url("predictor")
        pids = {role: p.pid for role, p in stack.procs.items()}
        stages = stage_p50(t_url, p_url, files, args.requests)
        rss_before = {role: rss_mb(pid) for role, pid in pids.items()}
        loads = [load(t_url, files, c, args.duration) for c in args.clients]
        rss_after = {role: rss_mb(pid) for role, pid in pids.items()}
    finally:
        stack.stop()
    t_ort, t_torch = ort_vs_torch(net, onnx_path, grid)
    import torch

    with torch.no_grad():
        feature_shape = tuple(net.forward_with_features(torch.zeros(1, 4, *grid))[1].shape[1:])
    return {"profile": name, "grid": grid, "model": type(net).__name__, "stages": stages, "ort_ms": t_ort,
            "decode": decode_vs_kserve(feature_shape),
            "torch_ms": t_torch, "loads": loads, "rss_before": rss_before, "rss_after": rss_after}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(results: list[dict[str, Any]]) -> str:
    """Markdown tables."""
    stages = list(results[0]["stages"])
    lines = ["| profile (grid) | " + " | ".join(f"{s} p50 ms" for s in stages) + " |",
             "|---|" + "---|" * len(stages)]
    for r in results:
        lines.append(f"| {r['profile']} ({'x'.join(map(str, r['grid']))}) | "
                     + " | ".join(f"{r['stages'][s]:.0f}" for s in stages) + " |")
    lines += ["", "| profile | onnxruntime p50 ms | PyTorch eager p50 ms | eager / ORT |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['profile']} | {r['ort_ms']:.0f} | {r['torch_ms']:.0f} | {r['torch_ms'] / r['ort_ms']:.2f} |")
    lines += ["", "| profile | reply (5-fold ensemble) MB | KServe from_bytes p50 ms | v2rest p50 ms | ratio |",
              "|---|---|---|---|---|"]
    for r in results:
        d = r["decode"]
        lines.append(f"| {r['profile']} | {d['mb']:.1f} | {d['kserve_ms']:.0f} | {d['v2rest_ms']:.1f} | "
                     f"{d['kserve_ms'] / d['v2rest_ms']:.0f}x |")
    lines += ["", "| profile | clients | requests | errors | throughput req/s | p50 ms | p95 ms |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        for ld in r["loads"]:
            lines.append(f"| {r['profile']} | {ld['clients']} | {ld['requests']} | {ld['errors']} | "
                         f"{ld['throughput']:.2f} | {ld['p50']:.0f} | {ld['p95']:.0f} |")
    lines += ["", "| profile | server | RSS before load MB | RSS after load MB |", "|---|---|---|---|"]
    for r in results:
        for role in r["rss_before"]:
            lines.append(f"| {r['profile']} | {role} | {r['rss_before'][role]:.0f} | {r['rss_after'][role]:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="quick,full", help="comma-separated profile names")
    parser.add_argument("--requests", type=int, default=5, help="sequential requests for the stage p50")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency level")
    parser.add_argument("--clients", default="1,4,8", help="concurrency levels")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="glioma-bench-serve-") as tmp:
        work = Path(tmp)
        files = write_case(work / "case")
        results = [bench_profile(p.strip(), files, work, args) for p in args.profiles.split(",") if p.strip()]
    import platform

    print(f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; case 4 x 240x240x155 (1 mm)\n")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
