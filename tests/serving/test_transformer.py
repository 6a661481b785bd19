"""Transformer end to end on real KServe processes (``glioma serve``): protocols, CAM, bad input, metrics."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from serving_fixtures import MODEL, PREPROCESS, Server

from gliomagrade.constants import SEQUENCES
from gliomagrade.serving.client import result_from_v2, v2_binary_body

pytestmark = pytest.mark.integration


def v1(server: Server, instance: dict, timeout: float = 60, **extra: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json={"instances": [instance], **extra},
                      timeout=timeout)


def v2_json(server: Server, files_b64: dict[str, str], **extra: object) -> httpx.Response:
    inputs = [{"name": k, "shape": [1], "datatype": "BYTES", "data": [v]} for k, v in files_b64.items()]
    return httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json={"inputs": inputs, **extra}, timeout=60)


def nifti_bytes(array: np.ndarray, spacing: tuple[float, ...] = (3.0, 3.0, 3.5), gz: bool = True) -> bytes:
    image = sitk.GetImageFromArray(array)
    if image.GetDimension() == len(spacing):
        image.SetSpacing(spacing)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.nii.gz" if gz else "x.nii")
        sitk.WriteImage(image, str(path))
        return path.read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ good requests


def test_v1_answer_matches_preprocess_case_and_the_predictor(transformer: Server, predictor: Server, store_uri: str,
                                                             case_dir: Path, case_b64: dict[str, str],
                                                             tmp_path: Path) -> None:
    """The transformer's probabilities and CAM equal what preprocess_case + the predictor + the head give."""
    import tritonclient.http as triton

    from gliomagrade.config import PreprocessConfig
    from gliomagrade.preprocess import preprocess_case, to_reference_space
    from gliomagrade.serving.bundle import fetch_bundle, load_bundle
    from gliomagrade.serving.transformer import calibrated_probabilities, class_activation_map

    response = v1(transformer, case_b64, parameters={"cam": "both"})
    assert response.status_code == 200, response.text
    result = response.json()["predictions"][0]

    images = {s: sitk.ReadImage(str(case_dir / f"{s}.nii.gz"), sitk.sitkFloat32) for s in SEQUENCES}
    pre = preprocess_case(images, PreprocessConfig.model_validate(PREPROCESS), subject="upload")
    client = triton.InferenceServerClient(f"127.0.0.1:{predictor.http}")
    tensor = triton.InferInput("image", [1, *pre.image.shape], "FP32")
    tensor.set_data_from_numpy(pre.image.astype(np.float32)[None])
    out = client.infer(MODEL, [tensor])
    probs = calibrated_probabilities(out.as_numpy("logits")[0], temperature=1.5)
    assert list(result["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-4)
    assert result["grade"] == ("HGG" if probs[1] >= 0.5 else "LGG")
    assert result["model_version"] == "1" and set(result["timings_ms"]) == {"decode", "preprocess", "predict",
                                                                            "cam", "encode"}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cam.nii.gz"
        path.write_bytes(base64.b64decode(result["cam"]["nifti_gz_b64"]))
        cam = sitk.ReadImage(str(path))
    t1ce = images["t1ce"]
    assert cam.GetSize() == t1ce.GetSize()
    assert np.allclose(cam.GetOrigin(), t1ce.GetOrigin()) and np.allclose(cam.GetSpacing(), t1ce.GetSpacing())
    assert np.allclose(cam.GetDirection(), t1ce.GetDirection())
    values = sitk.GetArrayFromImage(cam)
    assert values.min() >= 0 and 0.5 < values.max() <= 1.0 + 1e-6
    bundle = load_bundle(fetch_bundle(store_uri, MODEL, "promoted", tmp_path))
    grid_cam, peak = class_activation_map(out.as_numpy("features")[0], bundle.head_weight, 1, pre.image.shape[1:])
    assert result["cam_peak"] == pytest.approx(peak, rel=1e-4) and peak > 0
    expected = sitk.GetArrayFromImage(to_reference_space(grid_cam, pre.geometry))
    np.testing.assert_allclose(values, expected, atol=1e-3)
    assert result["cam"]["png_b64"] and base64.b64decode(result["cam"]["png_b64"])[:4] == b"\x89PNG"


def test_every_protocol_gives_the_same_answer(transformer: Server, case_bytes: dict[str, bytes],
                                              case_b64: dict[str, str]) -> None:
    """V1 JSON, V2 JSON (base64), V2 binary extension, KServe's REST client and gRPC all agree."""
    import asyncio

    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    answers = {"v1": v1(transformer, case_b64, parameters={"cam": "none"}).json()["predictions"][0]}
    answers["v2-json"] = result_from_v2(v2_json(transformer, case_b64, parameters={"cam": "none"}).json())
    body, headers = v2_binary_body(case_bytes, "nifti")
    binary = httpx.post(f"{transformer.url}/v2/models/{MODEL}/infer", content=body, headers=headers, timeout=60)
    answers["v2-binary"] = result_from_v2(binary.json())
    assert answers["v2-binary"]["cam"]["nifti_gz_b64"]

    def request() -> InferRequest:
        inputs = []
        for name, data in case_bytes.items():
            tensor = InferInput(name=name, shape=[1], datatype="BYTES")
            tensor.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
            inputs.append(tensor)
        return InferRequest(model_name=MODEL, infer_inputs=inputs, parameters={"cam": "none"})

    async def kserve_clients() -> tuple[dict, dict]:
        rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        response = await rest.infer(transformer.url, request(), model_name=MODEL)
        await rest.close()
        grpc_client = InferenceGRPCClient(f"127.0.0.1:{transformer.grpc}", timeout=60)
        grpc_response = await grpc_client.infer(request())
        await grpc_client.close()
        return (json.loads(response.outputs[3].data[0]),
                json.loads(grpc_response.get_output_by_name("result").as_numpy()[0]))

    answers["kserve-rest"], answers["grpc"] = asyncio.run(kserve_clients())
    reference = answers["v1"]["probabilities"]
    for name, answer in answers.items():
        assert answer["probabilities"] == pytest.approx(reference, abs=1e-6), name
        assert answer["grade"] == answers["v1"]["grade"], name
    assert answers["v1"]["cam_peak"] is None and answers["grpc"]["cam_peak"] is None  # no map asked for
    assert answers["v2-binary"]["cam_peak"] > 0  # the map's scale travels in the result of every protocol


def test_dicom_zip_case_is_graded(transformer: Server, case_dir: Path, tmp_path: Path) -> None:
    """One zip holding the four DICOM series (SeriesDescription names the sequence) is a valid case."""
    from gliomagrade.dicomio import write_series

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for number, (seq, desc) in enumerate(zip(SEQUENCES, ("T1 SE", "T1 SE +C GD", "T2 TSE", "FLAIR"), strict=True), 1):
            image = sitk.ReadImage(str(case_dir / f"{seq}.nii.gz"))
            for path in write_series(image, tmp_path / seq, series_description=desc, series_number=number,
                                     patient_id="SECRET-ID-123", patient_name="Doe^Jane"):
                zf.write(path, f"{seq}/{path.name}")
    response = v1(transformer, {"dicom_zip": b64(buf.getvalue())}, parameters={"cam": "none"})
    assert response.status_code == 200, response.text
    assert "SECRET-ID-123" not in response.text and "Doe" not in response.text
    assert "SECRET-ID-123" not in transformer.log.read_text()


# ------------------------------------------------------------------------------------------- bad requests

SHAPE = (48, 64, 64)


def _good(case: dict[str, str], **changes: str) -> dict[str, str]:
    return {**case, **changes}


BadCase = Callable[[Server, dict[str, str], dict[str, bytes]], httpx.Response]
BAD_REQUESTS: dict[str, tuple[BadCase, int, str]] = {
    "malformed_json_v1": (lambda s, c, r: httpx.post(f"{s.url}/v1/models/{MODEL}:predict", content=b'{"instances": [',
                                                    headers={"content-type": "application/json"}), 400,
                          "Unrecognized request format"),
    "malformed_json_v2": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", content=b'{"inputs": [',
                                                    headers={"content-type": "application/json"}), 400,
                          "invalid request body"),
    "v2_without_inputs": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", json={"id": "x"}), 400,
                          "inputs"),
    "wrong_tensor_name": (lambda s, c, r: v2_json(s, {**{k: v for k, v in c.items() if k != "t2"}, "T2w": c["t2"]}),
                          400, "unknown input 'T2w'"),
    "wrong_tensor_datatype": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": k, "shape": [1], "datatype": "FP32", "data": [1.0]} for k in c]}), 400, "datatype FP32, expected BYTES"),
    "wrong_tensor_shape": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": k, "shape": [2], "datatype": "BYTES", "data": [v, v]} for k, v in c.items()]}), 400,
                           "at most 1 per request"),
    "shape_does_not_match_data": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": k, "shape": [1, 2], "datatype": "BYTES", "data": [v]} for k, v in c.items()]}), 400,
                                  "do not match datatype BYTES and shape"),
    "missing_sequence": (lambda s, c, r: v1(s, {k: v for k, v in c.items() if k != "flair"}), 400,
                         "missing sequence(s) ['flair']"),
    "duplicate_sequence": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": k, "shape": [1], "datatype": "BYTES", "data": [v]} for k, v in [*c.items(), ("t1", c["t1"])]]}),
                           400, "duplicate sequence 't1'"),
    "unknown_sequence_name": (lambda s, c, r: v1(s, {**c, "dwi": c["t1"]}), 400, "unknown input 'dwi'"),
    "bad_base64": (lambda s, c, r: v1(s, _good(c, t2="%%%not-base64%%%")), 400, "'t2': invalid base64"),
    "non_image_bytes": (lambda s, c, r: v1(s, _good(c, t1=b64(b"%PDF-1.4 not an image" * 30))), 400,
                        "not a NIfTI or DICOM zip"),
    "truncated_gzip": (lambda s, c, r: v1(s, _good(c, t1ce=b64(r["t1ce"][: len(r["t1ce"]) // 3]))), 400,
                       "t1ce"),
    "image_2d": (lambda s, c, r: v1(s, _good(c, t1=b64(nifti_bytes(np.random.rand(64, 64).astype(np.float32),
                                                                    (3.0, 3.0))))), 400, "3D"),
    "image_4d": (lambda s, c, r: v1(s, _good(c, t1=b64(nifti_bytes(np.random.rand(3, 8, 16, 16).astype(np.float32),
                                                                    (3.0, 3.0, 3.0, 1.0))))), 400, "t1"),
    "nan_voxels": (lambda s, c, r: v1(s, _good(c, flair=b64(nifti_bytes(
        np.where(np.random.rand(*SHAPE) > 0.5, np.nan, 1.0).astype(np.float32))))), 400, "flair"),
    "inf_voxels": (lambda s, c, r: v1(s, _good(c, flair=b64(nifti_bytes(
        np.where(np.random.rand(*SHAPE) > 0.99, np.inf, 1.0).astype(np.float32))))), 400, "flair"),
    "all_zero_sequence": (lambda s, c, r: v1(s, _good(c, t2=b64(nifti_bytes(np.zeros(SHAPE, np.float32))))), 400,
                          "t2"),
    "mismatched_fov": (lambda s, c, r: v1(s, _good(c, t2=b64(nifti_bytes(np.random.rand(*SHAPE).astype(np.float32),
                                                                          (1.0, 1.0, 1.0))))), 400,
                       "fields of view"),
    "dicom_zip_path_traversal": (lambda s, c, r: v1(s, {"dicom_zip": b64(zipped({"../../etc/evil.dcm": b"x" * 200}))}),
                                 400, "path traversal"),
    "dicom_zip_bomb": (lambda s, c, r: v1(s, {"dicom_zip": b64(zipped({"a.dcm": bytes(20_000_000)}))}), 400,
                       "zip bomb"),
    "not_a_zip": (lambda s, c, r: v1(s, {"dicom_zip": b64(b"PK\x03\x04 broken")}), 400, "zip"),
    "payload_over_limit": (lambda s, c, r: httpx.post(f"{s.url}/v2/models/{MODEL}/infer", content=b"x" * (21 << 20),
                                                     headers={"content-type": "application/json"}), 413,
                           "exceeds the limit"),
    "wrong_content_type": (lambda s, c, r: httpx.post(f"{s.url}/v1/models/{MODEL}:predict", data={"t1": "x"}), 415,
                           "unsupported content type"),
    "empty_body": (lambda s, c, r: httpx.post(f"{s.url}/v1/models/{MODEL}:predict", content=b"",
                                             headers={"content-type": "application/json"}), 400, "empty request body"),
    "too_many_instances": (lambda s, c, r: httpx.post(f"{s.url}/v1/models/{MODEL}:predict",
                                                     json={"instances": [c, c]}), 400, "too many instances: 2"),
    "unknown_parameter_value": (lambda s, c, r: v1(s, c, parameters={"cam": "gif"}), 400,
                                "'cam' must be one of"),
    "unknown_parameter": (lambda s, c, r: v1(s, c, parameters={"colour": "red"}), 400, "unknown parameter"),
    "unknown_model": (lambda s, c, r: httpx.post(f"{s.url}/v1/models/nope:predict", json={"instances": [c]}), 404,
                      "nope"),
    "binary_header_past_body": (lambda s, c, r: httpx.post(
        f"{s.url}/v2/models/{MODEL}/infer", content=b'{"inputs": []}',
        headers={"inference-header-content-length": "9999", "content-type": "application/octet-stream"}), 400,
                                "outside the body"),
}


@pytest.mark.parametrize("kind", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_clear_4xx_and_the_server_stays_up(kind: str, transformer: Server,
                                                               case_b64: dict[str, str],
                                                               case_bytes: dict[str, bytes]) -> None:
    send, status, fragment = BAD_REQUESTS[kind]
    response = send(transformer, case_b64, case_bytes)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"], response.text
    good = v1(transformer, case_b64, parameters={"cam": "none"})
    assert good.status_code == 200, good.text


def test_truncated_plain_nifti_is_refused(transformer: Server, case_b64: dict[str, str]) -> None:
    raw = gzip.decompress(base64.b64decode(case_b64["t1"]))
    response = v1(transformer, _good(case_b64, t1=b64(raw[: len(raw) // 2])))
    assert response.status_code == 400 and "t1" in response.json()["error"]


# ---------------------------------------------------------------------------------------------- metrics


def test_metrics_are_exported_with_documented_names(transformer: Server, predictor: Server,
                                                    case_b64: dict[str, str]) -> None:
    for _ in range(2):
        assert v1(transformer, case_b64, parameters={"cam": "nifti"}).status_code == 200
    text = httpx.get(f"{transformer.url}/metrics").text
    for needle in ('gliomagrade_stage_seconds_bucket{le="0.005",model="glioma",stage="preprocess"}',
                   'gliomagrade_model_info{model="glioma",server="transformer",version="1"} 1.0',
                   "gliomagrade_predictions_total{", "gliomagrade_high_grade_probability_bucket{",
                   'gliomagrade_input_qc_count{model="glioma",statistic="brain_volume_ml"}',
                   'gliomagrade_drift_psi{feature="prob_HGG",model="glioma",version="1"}',
                   'gliomagrade_drift_ks{feature="brain_volume_ml",model="glioma",version="1"}',
                   "request_preprocess_seconds_bucket"):
        assert needle in text, needle
    docs = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    names = {line.split("{")[0].split(" ")[0].removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
             .removesuffix("_total").removesuffix("_created") for line in text.splitlines()
             if line.startswith("gliomagrade_")}
    assert names and all(name in docs for name in names), sorted(n for n in names if n not in docs)
    predictor_text = httpx.get(f"{predictor.url}/metrics").text
    assert "gliomagrade_predictor_inference_seconds_count" in predictor_text
