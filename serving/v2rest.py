"""Open Inference Protocol (V2) REST call to the predictor whose binary outputs stay binary.

kserve 0.21's ``InferenceRESTClient.infer`` parses a binary reply with ``InferResponse.from_bytes``,
which turns every binary output into a Python list (``set_data_from_numpy(..., binary_data=False)``)
and back: ~130 ms per 1.8 MB of float32 (measured: BENCHMARKS.md, serving), i.e. most of the
transformer's predict stage for the feature maps of a fold ensemble. This call keeps them as bytes
(``np.frombuffer``), with the same request encoding, status errors (``httpx.HTTPStatusError``),
timeout and retries as KServe's client.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import httpx
import numpy as np
import orjson
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_np_dtype


class MalformedReply(ValueError):
    """The predictor's reply is not the V2 response it claims to be."""


HEADER_LENGTH = "inference-header-content-length"
"""Length of the JSON header before the binary tensors (the binary data extension's header)."""


def rest_client(timeout: float | None, retries: int) -> httpx.AsyncClient:
    """An async client configured like KServe's predictor client (timeout, retries, CA bundle)."""
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    return httpx.AsyncClient(timeout=timeout, transport=httpx.AsyncHTTPTransport(retries=retries, verify=verify))


async def infer(client: httpx.AsyncClient, base_url: str, model_name: str, request: InferRequest,
                headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None) -> InferResponse:
    """POST ``request`` to ``<base_url>/v2/models/<model_name>/infer``; raise for a non-2xx status."""
    body, json_length = request.to_rest()
    send = dict(headers or {})
    if json_length:
        send |= {HEADER_LENGTH: str(json_length), "content-type": "application/octet-stream"}
    else:
        body = orjson.dumps(body)
        send["content-type"] = "application/json"
    reply = await client.post(f"{base_url.rstrip('/')}/v2/models/{model_name}/infer", content=body, headers=send)
    reply.raise_for_status()
    if response_headers is not None:
        response_headers.update(reply.headers)
    return parse_response(reply.content, reply.headers.get(HEADER_LENGTH, len(reply.content)))


def parse_response(content: bytes, json_length: int | str) -> InferResponse:
    """A V2 REST reply (JSON header, then the binary tensors in output order) as an ``InferResponse``."""
    try:
        json_length = int(json_length)
    except ValueError as exc:
        raise MalformedReply(f"predictor reply's {HEADER_LENGTH} {json_length!r} is not an integer") from exc
    if not 0 < json_length <= len(content):
        raise MalformedReply(f"predictor reply's {HEADER_LENGTH} {json_length} is outside its {len(content)} bytes")
    try:
        header: dict[str, Any] = orjson.loads(content[:json_length])
        return _response(header, content, json_length)
    except orjson.JSONDecodeError as exc:
        raise MalformedReply(f"predictor reply is not a V2 response: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedReply(f"predictor reply lacks or mistypes a V2 field ({type(exc).__name__}: {exc})") from exc


def _response(header: dict[str, Any], content: bytes, json_length: int) -> InferResponse:
    """The outputs of a parsed header, binary ones read from ``content`` after ``json_length``."""
    specs = header.get("outputs", [])
    if any(spec.get("datatype") == "BYTES" for spec in specs):
        return InferResponse.from_bytes(content, json_length)  # length-prefixed strings: kserve's parser
    outputs, start = [], json_length
    for spec in specs:
        out = InferOutput(name=spec["name"], shape=spec["shape"], datatype=spec["datatype"])
        if to_np_dtype(spec["datatype"]) is None:
            raise MalformedReply(f"predictor output {spec['name']!r} has unknown datatype {spec['datatype']!r}")
        dtype = np.dtype(to_np_dtype(spec["datatype"]))
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is None:
            data = np.asarray(spec["data"], dtype=dtype)
        else:
            if not isinstance(size, int) or size < 0 or start + size > len(content):
                raise MalformedReply(f"predictor output {spec['name']!r}: binary_data_size {size!r} does not fit "
                                     f"the {len(content) - start} bytes left in the reply")
            data = np.frombuffer(content, dtype=dtype, count=size // dtype.itemsize, offset=start)
            start += size
        if data.size != int(np.prod(spec["shape"])):
            raise MalformedReply(f"predictor output {spec['name']!r} holds {data.size} values, shape {spec['shape']}")
        out.set_data_from_numpy(data.reshape(spec["shape"]), binary_data=True)
        outputs.append(out)
    if start != len(content):
        raise MalformedReply(f"predictor reply has {len(content) - start} bytes beyond its declared tensors")
    return InferResponse(response_id=header.get("id"), model_name=header["model_name"],
                         parameters=header.get("parameters"), infer_outputs=outputs)
