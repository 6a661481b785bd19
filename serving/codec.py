"""Request decoding and response encoding of the gliomagrade servers (Open Inference Protocol v2 and v1).

Transformer request (one case per request):

- V2 (REST JSON, REST with the binary-data extension, gRPC): one ``BYTES`` input of shape ``[1]`` per
  sequence, named ``t1``, ``t1ce``, ``t2``, ``flair`` (NIfTI ``.nii``/``.nii.gz`` bytes), or a single input
  ``dicom_zip`` (a zip of the four DICOM series). In JSON a BYTES element is the base64 text of the file;
  in binary form (REST extension, gRPC) it is the raw file.
- V1 (REST JSON): ``{"instances": [{"t1": "<base64>", ...}], "parameters": {...}}``.
- Parameters (request ``parameters``): ``cam`` = ``nifti`` (default) | ``png`` | ``both`` | ``none``.

KServe 0.21 decodes binary BYTES tensors through UTF-8 (it fails on gzip bytes) and turns every binary
tensor into a Python list; ``parse_v2_binary`` keeps raw bytes instead and validates sizes and bounds.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    deserialize_bytes_tensor,
    to_http_parameters,
)

from gliomagrade.constants import SEQUENCES

DICOM_INPUT = "dicom_zip"
CASE_INPUTS = (*SEQUENCES, DICOM_INPUT)
CAM_CHOICES = ("nifti", "png", "both", "none")
PARAMETERS = {"cam": CAM_CHOICES}
_ITEMSIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2, "UINT32": 4,
             "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}


@dataclass(frozen=True)
class CaseOptions:
    """Per-request options: which CAM encodings to return."""

    cam: str = "nifti"

    @property
    def cam_nifti(self) -> bool:
        return self.cam in ("nifti", "both")

    @property
    def cam_png(self) -> bool:
        return self.cam in ("png", "both")


@dataclass
class CaseRequest:
    """One decoded case: NIfTI bytes per sequence, or one DICOM zip; plus options and the protocol used."""

    images: dict[str, bytes] = field(default_factory=dict)
    dicom_zip: bytes | None = None
    options: CaseOptions = field(default_factory=CaseOptions)
    protocol: str = "v2"


# ----------------------------------------------------------------------------------------------------------
# V2 binary-data extension (REST)


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise InvalidInput(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidInput(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise InvalidInput(f"{where}: shape must be a list of non-negative integers, got {value!r}")
    return value


def parse_v2_binary(body: bytes, json_length: str | int | None, model_name: str) -> InferRequest:
    """Parse a V2 REST request with the binary-data extension, keeping binary tensors as raw bytes."""
    try:
        length = int(json_length)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {json_length!r}") from exc
    if not 0 < length <= len(body):
        raise InvalidInput(f"Inference-Header-Content-Length {length} is outside the body of {len(body)} bytes")
    try:
        header = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON header of the binary request: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidInput("the request JSON must be an object")
    raw_inputs = _field(header, "inputs", list, "request")
    offset = length
    inputs = []
    for i, spec in enumerate(raw_inputs):
        if not isinstance(spec, dict):
            raise InvalidInput(f"inputs[{i}] must be an object")
        name = _field(spec, "name", str, f"inputs[{i}]")
        where = f"input {name!r}"
        dtype = _field(spec, "datatype", str, where)
        shape = _shape(_field(spec, "shape", list, where), where)
        params = spec.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"{where}: parameters must be an object")
        tensor = InferInput(name=name, shape=shape, datatype=dtype, parameters=dict(params) or None)
        if "data" in spec:
            tensor.data = spec["data"]
        elif "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInput(f"{where}: binary_data_size {size!r} exceeds the {len(body) - offset} bytes "
                                   "left in the body")
            raw = body[offset:offset + size]
            offset += size
            _check_binary_size(raw, dtype, shape, where)
            tensor._raw_data = raw
        else:
            raise InvalidInput(f"{where}: neither 'data' nor parameters.binary_data_size is given")
        inputs.append(tensor)
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} bytes after the last binary tensor are not claimed by any input")
    outputs = None
    if isinstance(header.get("outputs"), list):
        outputs = [RequestedOutput(name=str(o.get("name")), parameters=o.get("parameters"))
                   for o in header["outputs"] if isinstance(o, dict)]
    params = header.get("parameters")
    return InferRequest(model_name=model_name, infer_inputs=inputs, request_id=header.get("id"),
                        parameters=params if isinstance(params, dict) else None, request_outputs=outputs)


def _check_binary_size(raw: bytes, dtype: str, shape: list[int], where: str) -> None:
    """Fixed-size datatypes must carry exactly prod(shape) * itemsize bytes."""
    if dtype == "BYTES":
        return
    if dtype not in _ITEMSIZE:
        raise InvalidInput(f"{where}: unknown datatype {dtype!r}")
    expected = math.prod(shape) * _ITEMSIZE[dtype]
    if len(raw) != expected:
        raise InvalidInput(f"{where}: {len(raw)} bytes of binary data, expected {expected} for {dtype} {shape}")


def input_array(tensor: InferInput) -> np.ndarray:
    """A V2 input as numpy, with errors naming the input (kserve raises bare ValueErrors on bad shapes)."""
    try:
        if tensor._raw_data is not None and tensor.datatype == "BYTES":
            return deserialize_bytes_tensor(tensor._raw_data).reshape(tensor.shape)
        return tensor.as_numpy()
    except InvalidInput:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"input {tensor.name!r}: data do not match datatype {tensor.datatype} and shape "
                           f"{tensor.shape}: {exc}") from exc


# ----------------------------------------------------------------------------------------------------------
# Transformer requests


def _b64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: expected a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}: invalid base64 ({exc})") from exc
    if not data:
        raise InvalidInput(f"{where}: empty file")
    return data


def parse_options(params: Any) -> CaseOptions:
    """Validate request parameters against ``PARAMETERS`` (unknown names and values are errors)."""
    if params is None:
        return CaseOptions()
    if not isinstance(params, Mapping):
        raise InvalidInput(f"parameters must be an object, got {type(params).__name__}")
    plain = to_http_parameters(params) if params and not isinstance(next(iter(params.values())),
                                                                    (str, int, float, bool)) else dict(params)
    unknown = sorted(set(plain) - set(PARAMETERS))
    if unknown:
        raise InvalidInput(f"unknown parameter(s) {unknown}; supported: {sorted(PARAMETERS)}")
    cam = plain.get("cam", "nifti")
    if cam not in CAM_CHOICES:
        raise InvalidInput(f"parameter 'cam' must be one of {list(CAM_CHOICES)}, got {cam!r}")
    return CaseOptions(cam=str(cam))


def _assign(case: CaseRequest, name: str, data: bytes) -> None:
    """Put one decoded file into the case, refusing duplicates and mixing DICOM with NIfTI."""
    key = name.strip().lower()
    if key not in CASE_INPUTS:
        raise InvalidInput(f"unknown input {name!r}; expected the sequences {list(SEQUENCES)} or {DICOM_INPUT!r}")
    if key == DICOM_INPUT:
        if case.dicom_zip is not None:
            raise InvalidInput(f"duplicate input {DICOM_INPUT!r}")
        case.dicom_zip = data
    else:
        if key in case.images:
            raise InvalidInput(f"duplicate sequence {key!r}")
        case.images[key] = data


def _check_complete(case: CaseRequest) -> CaseRequest:
    if case.dicom_zip is not None and case.images:
        raise InvalidInput(f"send either {DICOM_INPUT!r} or the NIfTI sequences, not both "
                           f"(got {DICOM_INPUT!r} and {sorted(case.images)})")
    if case.dicom_zip is None:
        missing = [s for s in SEQUENCES if s not in case.images]
        if missing:
            raise InvalidInput(f"missing sequence(s) {missing}; a case needs {list(SEQUENCES)} "
                               f"(got {sorted(case.images)})")
    return case


def decode_v1(body: Any, max_instances: int) -> CaseRequest:
    """Decode ``{"instances": [{"t1": b64, ...}], "parameters": {...}}`` (one case)."""
    if not isinstance(body, Mapping):
        raise InvalidInput(f"request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {"instances", "parameters"})
    if unknown:
        raise InvalidInput(f"unknown request field(s) {unknown}; expected 'instances' and optional 'parameters'")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list with one case")
    if len(instances) > max_instances:
        raise InvalidInput(f"too many instances: {len(instances)}, at most {max_instances} per request")
    instance = instances[0]
    if not isinstance(instance, Mapping):
        raise InvalidInput("each instance must be an object mapping sequence names to base64 files")
    case = CaseRequest(options=parse_options(body.get("parameters")), protocol="v1")
    for name, text in instance.items():
        _assign(case, str(name), _b64(text, f"instance field {name!r}"))
    return _check_complete(case)


def decode_v2(request: InferRequest, max_instances: int) -> CaseRequest:
    """Decode a V2 request (REST JSON/binary or gRPC) with BYTES inputs named after the sequences."""
    case = CaseRequest(options=parse_options(request.parameters), protocol="v2")
    if not request.inputs:
        raise InvalidInput("the request has no inputs")
    for tensor in request.inputs:
        where = f"input {tensor.name!r}"
        if tensor.name.strip().lower() not in CASE_INPUTS:
            raise InvalidInput(f"unknown input {tensor.name!r}; expected {list(CASE_INPUTS)}")
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"{where}: datatype {tensor.datatype}, expected BYTES")
        values = input_array(tensor).reshape(-1)
        if values.size > max_instances:
            raise InvalidInput(f"{where}: too many instances: {values.size}, at most {max_instances} per request")
        if values.size != 1 or math.prod(tensor.shape) != 1:
            raise InvalidInput(f"{where}: shape {tensor.shape}, expected [1] (one file)")
        value = values[0]
        data = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else _b64(value, where)
        if not data:
            raise InvalidInput(f"{where}: empty file")
        _assign(case, tensor.name, data)
    return _check_complete(case)


# ----------------------------------------------------------------------------------------------------------
# Transformer responses


def encode_v1(result: dict[str, Any]) -> dict[str, Any]:
    """V1 response: ``{"predictions": [result]}``."""
    return {"predictions": [result]}


def _bytes_output(name: str, text: str) -> InferOutput:
    out = InferOutput(name=name, shape=[1], datatype="BYTES")
    out.set_data_from_numpy(np.array([text.encode()], dtype=np.object_), binary_data=False)
    return out


def encode_v2(result: dict[str, Any], model_name: str, request_id: str | None) -> InferResponse:
    """V2 response: ``probabilities`` FP32 [1,K], ``grade`` and ``result`` (JSON) BYTES, CAMs as base64 BYTES."""
    probs = np.asarray([list(result["probabilities"].values())], dtype=np.float32)
    prob_out = InferOutput(name="probabilities", shape=list(probs.shape), datatype="FP32",
                           parameters={"class_names": ",".join(result["probabilities"])})
    prob_out.set_data_from_numpy(probs, binary_data=False)
    review = InferOutput(name="needs_review", shape=[1], datatype="BOOL")
    review.set_data_from_numpy(np.array([bool(result["needs_review"])]), binary_data=False)
    outputs = [prob_out, _bytes_output("grade", str(result["grade"])), review]
    cam = result.get("cam", {})
    summary = {k: v for k, v in result.items() if k != "cam"}
    outputs.append(_bytes_output("result", json.dumps(summary)))
    if cam.get("nifti_gz_b64"):
        outputs.append(_bytes_output("cam_nifti", cam["nifti_gz_b64"]))
    if cam.get("png_b64"):
        outputs.append(_bytes_output("cam_png", cam["png_b64"]))
    return InferResponse(response_id=request_id or "", model_name=model_name, infer_outputs=outputs,
                         model_version=str(result.get("model_version", "")))
