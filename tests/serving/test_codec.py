"""Request decoding: the V2 binary extension keeps raw bytes; V1/V2 case decoding names what is wrong."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from gliomagrade.serving.codec import (
    decode_v1,
    decode_v2,
    encode_v2,
    input_array,
    parse_options,
    parse_v2_binary,
)

GZ = b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4  # not UTF-8: KServe's own decoder fails on this


def _binary_request(files: dict[str, bytes], params: dict | None = None) -> tuple[bytes, int]:
    inputs = []
    for name, data in files.items():
        t = InferInput(name=name, shape=[1], datatype="BYTES")
        t.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
        inputs.append(t)
    body, length = InferRequest(model_name="m", infer_inputs=inputs, parameters=params).to_rest()
    return body, length


def test_binary_bytes_survive_the_round_trip() -> None:
    files = {s: GZ + s.encode() for s in ("t1", "t1ce", "t2", "flair")}
    body, length = _binary_request(files, {"cam": "png"})
    case = decode_v2(parse_v2_binary(body, length, "m"), max_instances=1)
    assert case.images == files
    assert case.options.cam == "png" and case.options.cam_png and not case.options.cam_nifti


def test_binary_fp32_tensor_is_kept_raw_and_checked() -> None:
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    t = InferInput(name="image", shape=list(x.shape), datatype="FP32")
    t.set_data_from_numpy(x, binary_data=True)
    body, length = InferRequest(model_name="m", infer_inputs=[t]).to_rest()
    req = parse_v2_binary(body, length, "m")
    np.testing.assert_array_equal(input_array(req.inputs[0]), x)
    with pytest.raises(InvalidInput, match="exceeds the 92 bytes left"):
        parse_v2_binary(body[:-4], length, "m")  # binary_data_size claims more than the body holds
    header = b'{"inputs":[{"name":"image","datatype":"FP32","shape":[1,2,3,5],"parameters":{"binary_data_size":96}}]}'
    with pytest.raises(InvalidInput, match="96 bytes of binary data, expected 120 for FP32"):
        parse_v2_binary(header + x.tobytes(), len(header), "m")


@pytest.mark.parametrize(("header", "match"), [
    ("abc", "must be an integer"),
    ("0", "outside the body"),
    ("999999", "outside the body"),
])
def test_binary_header_length_is_validated(header: str, match: str) -> None:
    body, _ = _binary_request({"t1": GZ})
    with pytest.raises(InvalidInput, match=match):
        parse_v2_binary(body, header, "m")


def test_binary_trailing_bytes_and_missing_inputs_are_errors() -> None:
    body, length = _binary_request({"t1": GZ})
    with pytest.raises(InvalidInput, match="not claimed"):
        parse_v2_binary(body + b"xx", length, "m")
    with pytest.raises(InvalidInput, match="missing field 'inputs'"):
        parse_v2_binary(b'{"x": 1}', 8, "m")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_v1_decoding_and_its_errors() -> None:
    inst = {s: _b64(GZ) for s in ("t1", "t1ce", "t2", "flair")}
    assert set(decode_v1({"instances": [inst]}, 1).images) == {"t1", "t1ce", "t2", "flair"}
    cases = [
        ({"instances": [inst, inst]}, "too many instances: 2"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [inst], "extra": 1}, "unknown request field"),
        ({"instances": [{**inst, "T1": _b64(GZ)}]}, "duplicate sequence 't1'"),
        ({"instances": [{**inst, "dicom_zip": _b64(GZ)}]}, "either 'dicom_zip' or"),
        ({"instances": [{"t1": _b64(GZ)}]}, "missing sequence"),
        ({"instances": [{**inst, "t2": "not base64!"}]}, "'t2': invalid base64"),
        ({"instances": [{**inst, "t2": 5}]}, "expected a base64 string"),
        ([1, 2], "must be a JSON object"),
    ]
    for body, match in cases:
        with pytest.raises(InvalidInput, match=match):
            decode_v1(body, 1)


def test_parameters_are_validated() -> None:
    assert parse_options(None).cam == "nifti"
    assert parse_options({"cam": "none"}).cam == "none"
    with pytest.raises(InvalidInput, match="unknown parameter"):
        parse_options({"colour": "red"})
    with pytest.raises(InvalidInput, match="must be one of"):
        parse_options({"cam": "gif"})


def test_v2_response_carries_probabilities_grade_and_result() -> None:
    result = {"model_name": "m", "model_version": "3", "probabilities": {"LGG": 0.2, "HGG": 0.8}, "grade": "HGG",
              "needs_review": False, "cam": {"nifti_gz_b64": "AAAA"}}
    rest, _ = encode_v2(result, "m", "req-1").to_rest()
    outputs = {o["name"]: o for o in rest["outputs"]}
    assert outputs["probabilities"]["data"] == pytest.approx([0.2, 0.8])
    assert outputs["grade"]["data"] == ["HGG"] and outputs["cam_nifti"]["data"] == ["AAAA"]
    assert "cam_png" not in outputs and rest["model_version"] == "3"
