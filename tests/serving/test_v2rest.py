"""The transformer's V2 REST call: binary outputs decoded without a list round trip, same values as KServe's
parser and onnxruntime; malformed replies refused with a clear error."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from kserve import InferResponse
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, RequestedOutput
from serving_fixtures import GRID, MODEL, Server

from gliomagrade.serving import v2rest
from gliomagrade.serving.limits import PredictorFailed
from gliomagrade.serving.transformer import _predictor_error


def _reply(*arrays: np.ndarray, binary: bool = True) -> tuple[bytes, int]:
    outputs = []
    for i, a in enumerate(arrays):
        out = InferOutput(name=f"out{i}", shape=list(a.shape), datatype="FP32" if a.dtype == np.float32 else "INT64")
        out.set_data_from_numpy(a, binary_data=binary)
        outputs.append(out)
    body, json_length = InferResponse(response_id="r", model_name="m", infer_outputs=outputs,
                                      use_binary_outputs=binary).to_rest()
    if isinstance(body, dict):
        import orjson

        body = orjson.dumps(body)
    return body, json_length or len(body)


def test_binary_and_json_outputs_decode_like_kserve() -> None:
    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(1, 3, 4, 5, 6)).astype(np.float32), np.arange(6, dtype=np.int64).reshape(2, 3))
    for binary in (True, False):
        body, json_length = _reply(*arrays, binary=binary)
        ours = v2rest.parse_response(body, json_length)
        theirs = InferResponse.from_bytes(body, json_length)
        assert ours.model_name == "m" and ours.id == "r"
        for i, a in enumerate(arrays):
            got = ours.get_output_by_name(f"out{i}").as_numpy()
            assert got.dtype == a.dtype and got.shape == a.shape
            np.testing.assert_array_equal(got, a)
            np.testing.assert_array_equal(got, theirs.get_output_by_name(f"out{i}").as_numpy())


@pytest.mark.parametrize(("cut", "fragment"), [(-8, "binary_data_size 64 does not fit the 56 bytes"),
                                               (+4, "4 bytes beyond")])
def test_truncated_or_padded_reply_is_refused(cut: int, fragment: str) -> None:
    body, json_length = _reply(np.ones((2, 8), np.float32))
    body = body[:cut] if cut < 0 else body + b"\0" * cut
    with pytest.raises(v2rest.MalformedReply, match=fragment):
        v2rest.parse_response(body, json_length)


@pytest.mark.parametrize(("edit", "fragment"), [
    ((b'"binary_data_size":64', b'"binary_data_size":-4'), "binary_data_size -4 does not fit"),
    ((b'"binary_data_size":64', b'"binary_data_size":"64"'), "binary_data_size '64' does not fit"),
    ((b'"FP32"', b'"FP99"'), "unknown datatype 'FP99'"),
])
def test_bad_output_fields_are_refused(edit: tuple[bytes, bytes], fragment: str) -> None:
    body, json_length = _reply(np.ones((2, 8), np.float32))
    header = body[:json_length].replace(*edit)
    assert header != body[:json_length]
    with pytest.raises(v2rest.MalformedReply, match=fragment):
        v2rest.parse_response(header + body[json_length:], len(header))


@pytest.mark.parametrize(("length", "fragment"), [("abc", "'abc' is not an integer"), (0, "outside its"),
                                                  (10**9, "outside its")])
def test_bad_header_length_is_refused(length: int | str, fragment: str) -> None:
    body, _ = _reply(np.ones((2, 8), np.float32))
    with pytest.raises(v2rest.MalformedReply, match=fragment):
        v2rest.parse_response(body, length)


def test_only_malformed_replies_map_to_502() -> None:
    assert isinstance(_predictor_error(v2rest.MalformedReply("x"), "p"), PredictorFailed)
    assert not isinstance(_predictor_error(ValueError("the transformer's own bug"), "p"), PredictorFailed)


def test_shape_that_disagrees_with_the_bytes_is_refused() -> None:
    body, json_length = _reply(np.ones((2, 8), np.float32))
    body = body.replace(b"[2,8]", b"[2,9]", 1)
    assert b"[2,9]" in body[:json_length]
    with pytest.raises(v2rest.MalformedReply, match=r"holds 16 values, shape \[2, 9\]"):
        v2rest.parse_response(body, json_length)


def test_non_json_header_is_refused() -> None:
    with pytest.raises(v2rest.MalformedReply, match="not a V2 response"):
        v2rest.parse_response(b"<html>oops</html>", 17)
    with pytest.raises(v2rest.MalformedReply, match="KeyError"):
        v2rest.parse_response(b'{"outputs": [{"shape": [1]}]}', 29)


@pytest.mark.integration
def test_real_predictor_reply_matches_onnxruntime(predictor: Server, store_uri: str, tmp_path) -> None:
    import onnxruntime as ort

    from gliomagrade.serving.bundle import fetch_bundle, load_bundle

    image = np.random.default_rng(1).normal(size=(1, 4, *GRID)).astype(np.float32)
    bundle = load_bundle(fetch_bundle(store_uri, MODEL, "promoted", tmp_path))
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    logits, features = session.run(["logits", "features"], {"image": image})

    async def call() -> InferResponse:
        tensor = InferInput("image", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image, binary_data=True)
        request = InferRequest(MODEL, [tensor], request_outputs=[
            RequestedOutput(n, {"binary_data": True}) for n in ("logits", "features")])
        async with v2rest.rest_client(30, 0) as client:
            return await v2rest.infer(client, predictor.url, MODEL, request)

    response = asyncio.run(call())
    np.testing.assert_allclose(response.get_output_by_name("logits").as_numpy(), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(response.get_output_by_name("features").as_numpy(), features, rtol=1e-5, atol=1e-5)
