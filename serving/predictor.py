"""ONNX predictor: a ``kserve.Model`` over onnxruntime speaking Open Inference Protocol v2 (REST + gRPC).

It serves the same model name, tensor names, shapes and datatypes as Triton does from the version's
model repository (``image`` FP32 [N,C,D,H,W] -> ``logits`` FP32 [N,K], ``features`` FP32 [N,F,d,h,w]),
so the cluster's Triton ONNX runtime is a drop-in replacement. Run it with::

    python -m gliomagrade.serving.predictor --model_name glioma --model_dir <bundle|store URI> \
        [--model_version promoted] --http_port 8080 --grpc_port 8081
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model, model_server
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from gliomagrade.errors import StoreError
from gliomagrade.serving import metrics
from gliomagrade.serving.bundle import (
    FEATURES_NAME,
    INPUT_NAME,
    LOGITS_NAME,
    ModelBundle,
    fetch_bundle,
    load_bundle,
)
from gliomagrade.serving.codec import input_array
from gliomagrade.serving.limits import add_limit_args, limits_from_args

log = logging.getLogger(__name__)
MAX_BATCH = 8


def _providers(device: str) -> list[str]:
    """CUDA execution provider when present (and asked for), CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if device in ("auto", "cuda") else []
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise StoreError(f"--device cuda asked for but onnxruntime offers only {available}")
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxPredictor(Model):
    """Loads one registry version and runs its ONNX graph; ``load()`` raises on anything missing."""

    def __init__(self, name: str, source: str, version: str = "promoted", device: str = "auto",
                 cache_dir: Path | None = None, threads: int = 0):
        super().__init__(name)
        self.source, self.version, self.device, self.threads = source, version, device, threads
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "gliomagrade-serving"
        self.bundle: ModelBundle | None = None
        self.session: Any = None

    def load(self) -> bool:
        """Fetch (checksums verified), open the ONNX session and check its tensor names; fail loudly."""
        import onnxruntime as ort

        root = fetch_bundle(self.source, self.name, self.version, self.cache_dir)
        bundle = load_bundle(root)
        if bundle.name != self.name:
            raise StoreError(f"bundle {root} holds model {bundle.name!r}, expected {self.name!r}")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        session = ort.InferenceSession(str(bundle.onnx_path), opts, providers=_providers(self.device))
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [INPUT_NAME] or set(outputs) != {LOGITS_NAME, FEATURES_NAME}:
            raise StoreError(f"{bundle.onnx_path}: graph has inputs {inputs} and outputs {outputs}, expected "
                             f"[{INPUT_NAME!r}] and {{{LOGITS_NAME!r}, {FEATURES_NAME!r}}}")
        self.bundle, self.session = bundle, session
        metrics.MODEL_INFO.labels(self.name, bundle.version, "predictor").set(1)
        log.info("loaded %s version %s (%s) with %s", self.name, bundle.version, bundle.onnx_path,
                 session.get_providers())
        self.ready = True
        return self.ready

    def _spec(self, arg: Any) -> dict[str, Any]:
        shape = [d if isinstance(d, int) else -1 for d in arg.shape]
        return {"name": arg.name, "datatype": "FP32", "shape": shape}

    def get_input_types(self) -> list[dict[str, Any]]:
        return [self._spec(i) for i in self.session.get_inputs()] if self.session else []

    def get_output_types(self) -> list[dict[str, Any]]:
        return [self._spec(o) for o in self.session.get_outputs()] if self.session else []

    def _image(self, request: InferRequest) -> np.ndarray:
        """The validated ``image`` tensor (name, datatype, shape and finiteness checked)."""
        names = [t.name for t in request.inputs]
        if names != [INPUT_NAME]:
            raise InvalidInput(f"expected exactly one input {INPUT_NAME!r}, got {names}")
        tensor = request.inputs[0]
        if tensor.datatype != "FP32":
            raise InvalidInput(f"input {INPUT_NAME!r}: datatype {tensor.datatype}, expected FP32")
        assert self.bundle is not None
        expected = list(self.bundle.manifest.input_shape)
        shape = list(tensor.shape)
        if len(shape) != 5 or shape[1:] != expected or not 1 <= shape[0] <= MAX_BATCH:
            raise InvalidInput(f"input {INPUT_NAME!r}: shape {shape}, expected [N, {', '.join(map(str, expected))}]"
                               f" with 1 <= N <= {MAX_BATCH}")
        image = input_array(tensor).astype(np.float32, copy=False)
        if not np.isfinite(image).all():
            raise InvalidInput(f"input {INPUT_NAME!r}: contains NaN or Inf values")
        return image

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None) -> InferResponse:
        """Run the graph on the ``image`` tensor and return the requested outputs."""
        if not isinstance(payload, InferRequest):
            raise InvalidInput("the predictor speaks the V2 protocol only (POST /v2/models/<name>/infer)")
        image = self._image(payload)
        wanted = [o.name for o in payload.request_outputs] if payload.request_outputs else [LOGITS_NAME,
                                                                                              FEATURES_NAME]
        unknown = sorted(set(wanted) - {LOGITS_NAME, FEATURES_NAME})
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model has {[LOGITS_NAME, FEATURES_NAME]}")
        start = time.perf_counter()
        results = self.session.run(wanted, {INPUT_NAME: image})
        metrics.PREDICTOR_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        outputs = []
        for name, array in zip(wanted, results, strict=True):
            out = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            out.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.float32), binary_data=True)
            outputs.append(out)
        assert self.bundle is not None
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs,
                             model_version=self.bundle.version, use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus the predictor's own."""
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="bundle directory or registry store URI (path, s3://)")
    parser.add_argument("--model_version", default="promoted", help="'promoted' or a version number")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("GLIOMA_ORT_THREADS", "0")),
                        help="onnxruntime intra-op threads (0: all cores)")
    add_limit_args(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m gliomagrade.serving.predictor``."""
    from gliomagrade.serving.server import serve

    args = build_parser().parse_args(argv)
    limits = limits_from_args(args)
    model = OnnxPredictor(args.model_name, args.model_dir, args.model_version, args.device, threads=args.threads)
    model.load()
    serve(model, args, limits, "predictor")


if __name__ == "__main__":
    main()
