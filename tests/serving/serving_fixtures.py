"""Serving test support: a small phantom case, a real registry version, real KServe server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import SimpleITK as sitk

MODEL = "glioma"
GRID = (24, 24, 24)
PREPROCESS = {"grid": list(GRID), "coregister": False, "template_transform": "rigid", "registration_spacing_mm": 4.0,
              "registration_iterations": 30, "skull_strip_refine": False}
"""A fast preprocessing configuration (seconds per case on 2 cores); serving uses the manifest's, as in production."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phantom_images(seed: int = 0) -> dict[str, sitk.Image]:
    """A small synthetic head (3 mm voxels) with a tumour: the four sequences as SimpleITK images."""
    from gliomagrade.preprocess.phantom import make_phantom

    return make_phantom(size=(64, 64, 48), spacing=(3.0, 3.0, 3.5), template_spacing_mm=2.0, seed=seed).images


def write_case(images: dict[str, sitk.Image], folder: Path) -> dict[str, Path]:
    """Write ``<folder>/<seq>.nii.gz`` for each sequence."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for seq, image in images.items():
        paths[seq] = folder / f"{seq}.nii.gz"
        sitk.WriteImage(image, str(paths[seq]), useCompression=True)
    return paths


def export_tiny_model(out: Path, grid: tuple[int, int, int] = GRID, classes: int = 2, seed: int = 0) -> Path:
    """A small GAP + linear net through the real exporter (Triton layout, parity-checked); returns ``out``."""
    import torch

    from gliomagrade.export import export_onnx
    from gliomagrade.models import build_model

    torch.manual_seed(seed)
    net = build_model("smallcnn", 4, classes, channels=(4, 8, 8, 16)).eval()
    with torch.no_grad():  # untrained: make the last class's evidence positive so its CAM is not all zero
        net.classifier.weight[-1].abs_()
    export_onnx(net, out, model_name=MODEL, version=1, input_shape=(4, *grid), class_names=["LGG", "HGG"][:classes])
    return out


def publish_version(store_dir: Path, work: Path, *, threshold: float = 0.5) -> str:
    """Publish and promote the tiny model in a local registry store; returns the store URI."""
    from gliomagrade.drift import ReferenceHistogram
    from gliomagrade.registry import Registry
    from gliomagrade.store import open_store

    files = export_tiny_model(work)
    rng = np.random.default_rng(0)
    manifest = {
        "class_names": ["LGG", "HGG"],
        "input": {"name": "image", "dtype": "float32", "shape": [-1, 4, *GRID]},
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 2]},
                    {"name": "features", "dtype": "float32", "shape": [-1, 16, 3, 3, 3]}],
        "temperature": 1.5,
        "head": {"in_features": 16, "num_classes": 2, "file": f"{MODEL}/1/head.json"},
        "threshold": threshold,
        "preprocess": PREPROCESS,
        "reference": {"prob_HGG": ReferenceHistogram.from_values(rng.beta(2, 2, 200), 10, (0, 1)).to_dict(),
                      "brain_volume_ml": ReferenceHistogram.from_values(rng.normal(1500, 150, 200), 10).to_dict(),
                      "t1ce_mean": ReferenceHistogram.from_values(rng.normal(700, 60, 200), 10).to_dict()},
        "qc_ranges": {"brain_volume_ml": [900, 2400], "t1ce_mean": [100, 5000]},
        "extra": {"review_confidence": 0.55},
    }
    registry = Registry(open_store(str(store_dir)), MODEL)
    info = registry.publish(files, manifest)
    registry.promote(info.version, "test fixture")
    return str(store_dir)


@dataclass
class Server:
    """A running KServe ModelServer subprocess."""

    proc: subprocess.Popen
    http: int
    grpc: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_server(module: str, args: list[str], log: Path, timeout: float = 120.0, http: int | None = None,
                 grpc: int | None = None, wait: bool = True) -> Server:
    """Start ``python -m gliomagrade.serving.<module>`` in its own process group (and wait until ready)."""
    http, grpc = http or free_port(), grpc or free_port()
    cmd = [sys.executable, "-m", f"gliomagrade.serving.{module}", "--model_name", MODEL, "--http_port", str(http),
           "--grpc_port", str(grpc), *args]
    env = {**os.environ, "GLIOMA_ORT_THREADS": "1"}
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    server = Server(proc, http, grpc, log)
    if wait:
        wait_ready(server, module, timeout)
    return server


def wait_ready(server: Server, what: str, timeout: float = 120.0) -> None:
    """Poll ``/v2/models/<name>/ready`` until 200; stop the server and raise with its log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {server.proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{what} not ready after {timeout} s:\n{server.log.read_text()[-3000:]}")


@dataclass
class Stack:
    """``glioma serve`` running: the transformer and predictor it started."""

    proc: subprocess.Popen
    transformer: Server
    predictor: Server
    output: list[str]


def start_stack(store_uri: str, logs: Path, timeout: float = 180.0) -> Stack:
    """Run ``glioma serve`` (both servers) and wait for its 'ready' line."""
    t_http, t_grpc, p_http, p_grpc = (free_port() for _ in range(4))
    cmd = [sys.executable, "-m", "gliomagrade.cli", "serve", "--store", store_uri, "--model", MODEL,
           "--http-port", str(t_http), "--grpc-port", str(t_grpc), "--predictor-http-port", str(p_http),
           "--predictor-grpc-port", str(p_grpc), "--max-body-mb", "20", "--timeout", "20",
           "--log-dir", str(logs)]
    env = {**os.environ, "GLIOMA_ORT_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=env)
    output: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line.rstrip())
        if line.startswith("ready") or time.monotonic() > deadline:
            break
    if not output or not output[-1].startswith("ready"):
        proc.terminate()  # the launcher stops the servers it started (they run in sessions of their own)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError("glioma serve did not get ready:\n" + "\n".join(output[-40:]))
    pids = dict(item.split() for item in next(x for x in output if x.startswith("pids")).split(None, 1)[1].split(", "))
    return Stack(proc, Server(_Pid(int(pids["transformer"])), t_http, t_grpc, logs / "transformer.log"),
                 Server(_Pid(int(pids["predictor"])), p_http, p_grpc, logs / "predictor.log"), output)


class _Pid:
    """The part of Popen a Server needs, for a process started by someone else."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int | None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return 0
        return None


