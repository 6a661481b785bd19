"""Transformer: decodes the four MRI sequences, preprocesses them, calls the ONNX predictor, adds the CAM.

``preprocess`` runs the training code's ``preprocess_case`` (no re-implementation: no training/serving
skew), ``predict`` sends the ``image`` tensor to the predictor over V2 REST (binary tensors) or gRPC
(``--predictor_protocol v2|grpc-v2``), ``postprocess`` calibrates the logits with the version's
temperature, computes the class activation map exactly from the returned feature maps and the head's
weights, maps it back onto the input t1ce grid and encodes the answer. Run it with::

    python -m gliomagrade.serving.transformer --model_name glioma --model_dir <bundle|store URI> \
        --predictor_host 127.0.0.1:8080 --predictor_protocol v2 --http_port 8090 --grpc_port 8091
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import SimpleITK as sitk
from kserve import Model, model_server
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput

from gliomagrade.config import PreprocessConfig
from gliomagrade.constants import QC_DRIFT_FEATURES, REFERENCE_SEQUENCE, SEQUENCES, WHO_CLASSES, WHO_TO_BINARY
from gliomagrade.drift import DriftMonitor, ReferenceHistogram
from gliomagrade.errors import InputError, PreprocessError
from gliomagrade.serving import metrics, v2rest
from gliomagrade.serving.bundle import (
    FEATURES_NAME,
    INPUT_NAME,
    LOGITS_NAME,
    ModelBundle,
    fetch_bundle,
    load_bundle,
)
from gliomagrade.serving.codec import CaseOptions, CaseRequest, decode_v1, decode_v2, encode_v1, encode_v2
from gliomagrade.serving.limits import (
    PredictorFailed,
    PredictorTimeout,
    PredictorUnavailable,
    ServingLimits,
    UnprocessableCase,
    add_limit_args,
    limits_from_args,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
QC_STATISTICS = QC_DRIFT_FEATURES
"""Input statistics exported as metrics and watched for drift (t1ce brain mean before z-scoring, brain ml)."""


@dataclass
class PreparedCase:
    """What preprocess hands to predict and postprocess (kept in process, never in headers)."""

    request_id: str
    protocol: str
    options: CaseOptions
    image: np.ndarray
    geometry: Any
    qc: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities of one case with the version's temperature (the calibration module's softmax)."""
    from gliomagrade.calibration import apply_temperature

    return apply_temperature(np.asarray(logits, np.float64)[None], temperature)[0]


def class_activation_map(features: np.ndarray, weight: np.ndarray, class_index: int,
                         grid_shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """``explain.cam_from_features`` (exact CAM of a GAP + linear head) upsampled to the grid and divided
    by its peak on the feature grid, and that peak (logit per feature cell): a near-empty map (little
    evidence anywhere) is reported as such instead of being stretched to look like a finding."""
    from scipy import ndimage

    from gliomagrade.explain import cam_from_features

    if features.ndim != 4 or features.shape[0] != weight.shape[1]:
        raise PredictorFailed(f"predictor returned features of shape {list(features.shape)}, expected "
                              f"[{weight.shape[1]}, d, h, w] for the head's {weight.shape[1]} features")
    cam = np.asarray(cam_from_features(np.array(features, np.float32), weight, class_index), np.float32)
    factors = [g / s for g, s in zip(grid_shape, cam.shape, strict=True)]
    peak = float(cam.max())
    cam = ndimage.zoom(cam, factors, order=1, mode="nearest", grid_mode=True)
    return (cam / peak if peak > 0 else cam).astype(np.float32), peak


def nifti_gz_bytes(image: sitk.Image) -> bytes:
    """Write an image as .nii.gz bytes (SimpleITK needs a file name to pick the format)."""
    with tempfile.TemporaryDirectory(prefix="glioma-cam-") as tmp:
        path = Path(tmp) / "cam.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def cam_montage_png(background: np.ndarray, cam: np.ndarray, title: str, slices: int = 9) -> bytes:
    """A 3x3 montage of axial grid slices: t1ce (z-scored) with the CAM overlaid; no identifiers drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = background.shape[0]
    picks = np.linspace(depth * 0.2, depth * 0.8, slices).astype(int)
    cols = int(np.ceil(np.sqrt(slices)))
    fig, axes = plt.subplots(cols, cols, figsize=(2 * cols, 2 * cols), dpi=80)
    for ax, z in zip(np.ravel(axes), picks, strict=False):
        ax.imshow(background[z], cmap="gray", origin="lower")
        ax.imshow(np.ma.masked_less(cam[z], 0.1), cmap="jet", alpha=0.45, vmin=0, vmax=1, origin="lower")
        ax.set_title(f"z={z}", fontsize=7)
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class GliomaTransformer(Model):
    """KServe transformer of one model version (the same name as the predictor it calls)."""

    def __init__(self, name: str, source: str, version: str = "promoted", limits: ServingLimits | None = None,
                 drift_window: int = 500, drift_min_count: int = 30, cache_dir: Path | None = None):
        super().__init__(name)
        self.source, self.version = source, version
        self.limits = limits or ServingLimits()
        self.drift_window, self.drift_min_count = drift_window, drift_min_count
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "gliomagrade-serving"
        self.bundle: ModelBundle | None = None
        self.cfg: PreprocessConfig | None = None
        self.drift: DriftMonitor | None = None
        self._rest: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------------------------------- load
    def load(self) -> bool:
        """Read the version's manifest and head (checksums verified), warm the template cache; fail loudly."""
        from gliomagrade.preprocess.template import load_template

        bundle = load_bundle(fetch_bundle(self.source, self.name, self.version, self.cache_dir))
        self.cfg = PreprocessConfig.model_validate(bundle.manifest.preprocess)
        expected = (len(bundle.manifest.sequences), *self.cfg.grid)
        if tuple(bundle.manifest.input_shape) != expected:
            raise InputError(f"manifest input shape {list(bundle.manifest.input_shape)} does not match its "
                             f"sequences and preprocessing grid {list(expected)}", source=str(bundle.root))
        refs = {k: ReferenceHistogram.from_dict(v) for k, v in bundle.manifest.reference.items()}
        self.drift = DriftMonitor(refs, window=self.drift_window, min_count=self.drift_min_count)
        load_template(self.cfg.registration_spacing_mm)
        import gliomagrade.explain  # noqa: F401 - warm the CAM code (torch) so the first request is not slow
        self.bundle = bundle
        metrics.MODEL_INFO.labels(self.name, bundle.version, "transformer").set(1)
        log.info("transformer %s version %s ready (grid %s, drift features %s)", self.name, bundle.version,
                 list(self.cfg.grid), list(refs))
        self.ready = True
        return self.ready

    def _stage(self, case: PreparedCase, stage: str, seconds: float) -> None:
        case.timings[stage] = round(seconds * 1000, 1)
        metrics.STAGE_SECONDS.labels(self.name, stage).observe(seconds)

    @staticmethod
    async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound work off the event loop so health checks and metrics stay responsive."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # ------------------------------------------------------------------------------------- preprocess
    def _read_images(self, request: CaseRequest) -> dict[str, sitk.Image]:
        from gliomagrade.imageio import read_dicom_zip, read_image_bytes

        if request.dicom_zip is not None:
            return read_dicom_zip(request.dicom_zip, subject="upload")
        return {seq: read_image_bytes(data, sequence=seq, subject="upload", max_bytes=self.limits.max_image_bytes)
                for seq, data in request.images.items()}

    async def preprocess(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> PreparedCase:
        """Decode the request and run ``preprocess_case``; bad input raises InvalidInput (400)."""
        from gliomagrade.preprocess import preprocess_case

        assert self.cfg is not None
        start = time.perf_counter()
        request_id = (headers or {}).get("x-request-id", "")
        if isinstance(payload, InferRequest):
            request, request_id = decode_v2(payload, self.limits.max_instances), payload.id or request_id
        elif isinstance(payload, dict):
            request = decode_v1(payload, self.limits.max_instances)
        else:
            raise InvalidInput(f"unsupported request body of type {type(payload).__name__}")
        try:
            images = await self._in_thread(self._read_images, request)
        except InputError as exc:
            raise InvalidInput(str(exc)) from exc
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        try:
            pre = await self._in_thread(lambda: preprocess_case(images, self.cfg, subject="upload"))
        except InputError as exc:
            raise InvalidInput(str(exc)) from exc
        except PreprocessError as exc:
            raise UnprocessableCase(str(exc)) from exc
        case = PreparedCase(request_id, request.protocol, request.options, pre.image, pre.geometry, dict(pre.qc))
        self._stage(case, "decode", decode_s)
        self._stage(case, "preprocess", time.perf_counter() - start)
        return case

    def validate(self, payload: Any) -> Any:
        """Our preprocess returns a PreparedCase, which KServe's dict/InferRequest checks do not apply to."""
        return payload if isinstance(payload, PreparedCase) else super().validate(payload)

    # ---------------------------------------------------------------------------------------- predict
    def _predictor_request(self, case: PreparedCase) -> InferRequest:
        assert self.bundle is not None
        channels = [SEQUENCES.index(s) for s in self.bundle.manifest.sequences]
        image = case.image[channels].astype(np.float32)[None]
        tensor = InferInput(name=INPUT_NAME, shape=list(image.shape), datatype="FP32")
        tensor.set_data_from_numpy(image, binary_data=True)
        outputs = [RequestedOutput(name, {"binary_data": True}) for name in (LOGITS_NAME, FEATURES_NAME)]
        return InferRequest(model_name=self.name, infer_inputs=[tensor], request_id=case.request_id or None,
                            request_outputs=outputs)

    async def _http_predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                            response_headers: dict[str, str] | None = None) -> InferResponse:
        """The V2 REST call of ``v2rest``: binary outputs stay binary, and only tracing/auth headers go on.

        (KServe 0.21's own call also forces ``Content-Type: application/json`` next to the binary body's
        ``application/octet-stream``, and the predictor then fails to parse the body as JSON.)
        """
        assert self.predictor_config is not None
        if self._rest is None:
            self._rest = v2rest.rest_client(self.predictor_config.timeout, self.predictor_config.retries)
        keep = ("x-request-id", "x-b3-traceid", "authorization")
        forward = {k: v for k, v in (headers or {}).items() if k.lower() in keep}
        return await v2rest.infer(self._rest, self.predictor_config.predictor_base_url, self.name, payload,
                                  forward, response_headers)

    async def predict(self, payload: PreparedCase, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> tuple[PreparedCase, InferResponse]:
        """Send the tensor to the predictor; map its failures to 503 (down), 504 (slow) or 502 (refused)."""
        start = time.perf_counter()
        host = self.predictor_config.predictor_host if self.predictor_config else None
        try:
            response = await super().predict(self._predictor_request(payload), headers)
        except Exception as exc:  # noqa: BLE001 - every transport error is mapped, none is swallowed
            raise _predictor_error(exc, host) from exc
        self._stage(payload, "predict", time.perf_counter() - start)
        return payload, response

    # ------------------------------------------------------------------------------------ postprocess
    def _decide(self, probs: np.ndarray) -> dict[str, Any]:
        """Grade, WHO grade (multiclass), high-grade probability and confidence from calibrated probabilities."""
        assert self.bundle is not None
        names = list(self.bundle.manifest.class_names)
        threshold = self.bundle.manifest.threshold
        out: dict[str, Any] = {"probabilities": {n: round(float(p), 6) for n, p in zip(names, probs, strict=True)}}
        if tuple(names) == WHO_CLASSES:
            k = int(np.argmax(probs))
            out.update(who_grade=names[k], grade=WHO_TO_BINARY[k + 2], prob_high=float(probs[-1]),
                       confidence=float(probs[k]))
        else:
            p_high = float(probs[-1])
            if len(names) == 2 and threshold is not None:
                k = int(p_high >= threshold)
            else:
                k = int(np.argmax(probs))
            out.update(grade=names[k], prob_high=p_high, confidence=float(probs[k]))
        return out

    def _review_reasons(self, decision: dict[str, Any], qc: dict[str, Any]) -> list[str]:
        """Why a human should look: low confidence, registration suspect, QC outside the training range."""
        assert self.bundle is not None
        manifest = self.bundle.manifest
        reasons = []
        if decision["confidence"] < manifest.review_confidence:
            reasons.append("low_confidence")
        if qc.get("registration_suspect"):
            reasons.append("registration_suspect")
        for key, (lo, hi) in manifest.qc_ranges.items():
            value = qc.get(key)
            if isinstance(value, (int, float)) and not lo <= float(value) <= hi:
                reasons.append(f"qc_out_of_range:{key}")
        return reasons

    def _cam(self, case: PreparedCase, features: np.ndarray, class_index: int, title: str) -> dict[str, Any]:
        """CAM on the grid -> t1ce input space ("cam"), then .nii.gz / PNG montage as base64 ("encode"),
        and the map's raw ``peak`` (what 1.0 in it stands for)."""
        from gliomagrade.preprocess import to_reference_space

        assert self.bundle is not None
        out: dict[str, Any] = {}
        if not (case.options.cam_nifti or case.options.cam_png):
            return out
        start = time.perf_counter()
        cam, peak = class_activation_map(features, self.bundle.head_weight, class_index, case.image.shape[1:])
        out["peak"] = round(peak, 6)
        on_input = to_reference_space(cam, case.geometry) if case.options.cam_nifti else None
        self._stage(case, "cam", time.perf_counter() - start)
        start = time.perf_counter()
        if on_input is not None:
            out["nifti_gz_b64"] = base64.b64encode(nifti_gz_bytes(on_input)).decode()
        if case.options.cam_png:
            png = cam_montage_png(case.image[SEQUENCES.index(REFERENCE_SEQUENCE)].astype(np.float32), cam,
                                  f"{title} (1.0 = {peak:.3g} logit per cell)")
            out["png_b64"] = base64.b64encode(png).decode()
        self._stage(case, "encode", time.perf_counter() - start)
        return out

    async def postprocess(self, result: tuple[PreparedCase, InferResponse], headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        """Calibrate, decide, flag for review, add the CAM, export metrics and drift; encode per protocol."""
        assert self.bundle is not None
        case, response = result
        manifest = self.bundle.manifest
        logits, features = _output(response, LOGITS_NAME), _output(response, FEATURES_NAME)
        if logits.shape != (1, len(manifest.class_names)):
            raise PredictorFailed(f"predictor returned logits of shape {list(logits.shape)}, expected "
                                  f"[1, {len(manifest.class_names)}]")
        probs = calibrated_probabilities(logits[0], manifest.temperature)
        decision = self._decide(probs)
        reasons = self._review_reasons(decision, case.qc)
        class_index = len(manifest.class_names) - 1  # CAM of the high-grade class: where the evidence for it is
        cam = await self._in_thread(self._cam, case, features[0], class_index,
                                    f"CAM {manifest.class_names[class_index]}")
        result_doc = {
            "model_name": self.name, "model_version": manifest.version, **decision,
            "needs_review": bool(reasons), "review_reasons": reasons,
            "qc": {k: case.qc[k] for k in (*QC_STATISTICS, "registration_suspect") if k in case.qc},
            "timings_ms": case.timings, "cam_peak": cam.pop("peak", None), "cam": cam,
        }
        self._observe(decision, reasons, case.qc)
        encoded = encode_v1(result_doc) if case.protocol == "v1" else encode_v2(result_doc, self.name,
                                                                                 case.request_id)
        log.info("graded request %s: %s (p_high %.3f, review %s) in %s ms", case.request_id or "-",
                 decision["grade"], decision["prob_high"], bool(reasons), case.timings)
        return encoded

    def _observe(self, decision: dict[str, Any], reasons: list[str], qc: dict[str, Any]) -> None:
        """Prediction, QC and drift metrics."""
        assert self.bundle is not None and self.drift is not None
        version = self.bundle.version
        metrics.PREDICTIONS.labels(self.name, version, decision["grade"]).inc()
        metrics.HIGH_GRADE_PROBABILITY.labels(self.name, version).observe(decision["prob_high"])
        for reason in reasons:
            metrics.REVIEW_FLAGS.labels(self.name, version, reason.split(":")[0]).inc()
        for key in QC_STATISTICS:
            if isinstance(qc.get(key), (int, float)):
                metrics.INPUT_QC.labels(self.name, key).observe(float(qc[key]))
        observed = {k: float(v) for k, v in qc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        observed.update({f"prob_{n}": float(p) for n, p in decision["probabilities"].items()})
        observed["prob_high"] = decision["prob_high"]
        self.drift.update(observed)
        for feature, values in self.drift.statistics().items():
            metrics.DRIFT_PSI.labels(self.name, version, feature).set(values["psi"])
            metrics.DRIFT_KS.labels(self.name, version, feature).set(values["ks"])
            metrics.DRIFT_WINDOW.labels(self.name, version, feature).set(values["n"])


def _output(response: InferResponse, name: str) -> np.ndarray:
    tensor = response.get_output_by_name(name)
    if tensor is None:
        raise PredictorFailed(f"predictor response has no output {name!r} "
                              f"(got {[o.name for o in response.outputs]})")
    return np.asarray(tensor.as_numpy(), np.float32)


def _predictor_error(exc: Exception, host: str | None) -> Exception:
    """Map a transport/status error of the predictor call to 503 / 504 / 502 with a clear message."""
    import grpc

    where = f"predictor at {host}"
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return PredictorTimeout(f"{where} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)):
        return PredictorUnavailable(f"{where} is unreachable ({type(exc).__name__}: {exc}); retry later")
    if isinstance(exc, v2rest.MalformedReply):
        return PredictorFailed(f"{where} sent a malformed reply: {exc}")
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        text = exc.response.text[:300]
        if status in (502, 503):
            return PredictorUnavailable(f"{where} is not ready (HTTP {status}: {text})")
        if status == 504:
            return PredictorTimeout(f"{where} timed out (HTTP 504)")
        return PredictorFailed(f"{where} refused the request (HTTP {status}: {text})")
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            return PredictorUnavailable(f"{where} is unreachable (gRPC UNAVAILABLE: {exc.details()}); retry later")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PredictorTimeout(f"{where} did not answer in time (gRPC DEADLINE_EXCEEDED)")
        return PredictorFailed(f"{where} refused the request (gRPC {code.name}: {exc.details()})")
    return exc


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags (incl. --predictor_host/--predictor_protocol/timeouts/retries) plus ours."""
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="bundle directory or registry store URI (path, s3://)")
    parser.add_argument("--model_version", default="promoted", help="'promoted' or a version number")
    parser.add_argument("--drift_window", type=int, default=500, help="recent predictions compared for drift")
    parser.add_argument("--drift_min_count", type=int, default=30, help="values before drift gauges are set")
    add_limit_args(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m gliomagrade.serving.transformer``."""
    from gliomagrade.serving.server import serve

    args = build_parser().parse_args(argv)
    if not args.predictor_host:
        raise SystemExit("--predictor_host is required (host:port of the predictor)")
    limits = limits_from_args(args)
    model = GliomaTransformer(args.model_name, args.model_dir, args.model_version, limits,
                              drift_window=args.drift_window, drift_min_count=args.drift_min_count)
    model.load()
    serve(model, args, limits, "transformer")


if __name__ == "__main__":
    main()
