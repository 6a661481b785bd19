"""ONNX predictor: Triton's V2 clients (HTTP binary/JSON, gRPC) and KServe's client; bad tensors; loading."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
from serving_fixtures import GRID, MODEL, Server

from gliomagrade.errors import StoreError
from gliomagrade.serving.bundle import fetch_bundle, load_bundle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle_dir(store_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetch_bundle(store_uri, MODEL, "promoted", tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 4, *GRID)).astype(np.float32)


def _reference(bundle_dir: Path, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(load_bundle(bundle_dir).onnx_path), providers=["CPUExecutionProvider"])
    logits, features = session.run(["logits", "features"], {"image": image})
    return logits, features


def test_triton_http_client_gets_the_onnx_outputs(predictor: Server, bundle_dir: Path, image: np.ndarray) -> None:
    import tritonclient.http as thttp

    logits, features = _reference(bundle_dir, image)
    client = thttp.InferenceServerClient(f"127.0.0.1:{predictor.http}")
    assert client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 4, *GRID]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("logits", "FP32"), ("features", "FP32")]
    for binary in (True, False):
        tensor = thttp.InferInput("image", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image, binary_data=binary)
        outputs = [thttp.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "features")]
        result = client.infer(MODEL, [tensor], outputs=outputs)
        np.testing.assert_allclose(result.as_numpy("logits"), logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(result.as_numpy("features"), features, rtol=1e-5, atol=1e-5)
    only = client.infer(MODEL, [tensor], outputs=[thttp.InferRequestedOutput("logits")])
    assert only.as_numpy("features") is None and only.as_numpy("logits").shape == (2, 2)


def test_kserve_rest_and_grpc_clients(predictor: Server, bundle_dir: Path, image: np.ndarray) -> None:
    """KServe's own clients (tritonclient.grpc cannot share a process with kserve: same proto file name)."""
    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    logits, features = _reference(bundle_dir, image)

    def request(binary: bool) -> InferRequest:
        tensor = InferInput("image", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image, binary_data=binary)
        return InferRequest(MODEL, [tensor])

    async def call() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        response = await rest.infer(predictor.url, request(False), model_name=MODEL)
        await rest.close()
        grpc_client = InferenceGRPCClient(f"127.0.0.1:{predictor.grpc}", timeout=30)
        grpc_response = await grpc_client.infer(request(True))
        await grpc_client.close()
        return (response.get_output_by_name("logits").as_numpy(), grpc_response.get_output_by_name("logits").as_numpy(),
                grpc_response.get_output_by_name("features").as_numpy())

    rest_logits, grpc_logits, grpc_features = asyncio.run(call())
    np.testing.assert_allclose(rest_logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grpc_logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grpc_features, features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("change", "fragment"), [
    ({"name": "input"}, "expected exactly one input 'image'"),
    ({"datatype": "FP64"}, "datatype FP64, expected FP32"),
    ({"shape": [1, 3, *GRID]}, "expected [N, 4, 24, 24, 24]"),
    ({"shape": [9, 4, *GRID]}, "1 <= N <= 8"),
    ({"nan": True}, "NaN or Inf"),
    ({"outputs": ["probabilities"]}, "unknown output(s) ['probabilities']"),
])
def test_bad_tensors_are_refused_with_400(predictor: Server, change: dict, fragment: str) -> None:
    import httpx

    shape = change.get("shape", [1, 4, *GRID])
    dtype = change.get("datatype", "FP32")
    data = np.zeros(int(np.prod(shape)), np.float32)
    if change.get("nan"):
        data[3] = np.nan
    if change.get("nan"):  # NaN has no JSON form: binary extension
        header = b'{"inputs":[{"name":"image","shape":' + str(shape).encode() + \
            b',"datatype":"FP32","parameters":{"binary_data_size":' + str(data.nbytes).encode() + b'}}]}'
        response = httpx.post(f"{predictor.url}/v2/models/{MODEL}/infer", content=header + data.tobytes(),
                              headers={"Inference-Header-Content-Length": str(len(header))})
    else:
        body: dict = {"inputs": [{"name": change.get("name", "image"), "shape": shape, "datatype": dtype,
                                  "data": data.tolist()}]}
        if "outputs" in change:
            body["outputs"] = [{"name": n} for n in change["outputs"]]
        response = httpx.post(f"{predictor.url}/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert httpx.get(f"{predictor.url}/v2/models/{MODEL}/ready").status_code == 200


def test_load_fails_loudly_on_tampered_or_missing_files(bundle_dir: Path, tmp_path: Path, store_uri: str) -> None:
    from gliomagrade.serving.predictor import OnnxPredictor

    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    head = copy / MODEL / "1" / "head.json"
    head.write_text(head.read_text().replace("0", "1", 1))
    with pytest.raises(StoreError, match=f"checksum mismatch for {MODEL}/1/head.json"):
        load_bundle(copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="neither a model version directory"):
        OnnxPredictor(MODEL, str(tmp_path / "empty"), cache_dir=tmp_path / "cache").load()
    with pytest.raises(StoreError, match="no version 7"):
        OnnxPredictor(MODEL, store_uri, version="7", cache_dir=tmp_path / "cache").load()
    model = OnnxPredictor(MODEL, store_uri, cache_dir=tmp_path / "cache")
    assert model.load() and model.ready and model.bundle is not None and model.bundle.version == "1"
