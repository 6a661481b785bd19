"""Client of the transformer (``glioma predict``): send one case, print the grade, write the CAM.

A case is a folder holding the four sequences, the four files themselves, or one DICOM zip. Files are
matched to sequences by name (``t1``, ``t1ce``, ``t2``, ``flair`` as the whole stem or its last
``_``/``-``/``.`` separated token, e.g. BraTS ``BraTS20_Training_001_t1ce.nii.gz``); the server sniffs
the content and never trusts the name. The request is V2 with the binary-data extension (raw file
bytes after the JSON header) or, with ``protocol="v1"``, V1 JSON with base64 files.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import InputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _stem(path: Path) -> str:
    name = path.name.lower()
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem.lower()


def sequence_of(path: Path) -> str | None:
    """The sequence a NIfTI file name refers to, or None."""
    stem = _stem(path)
    token = re.split(r"[_\-.]", stem)[-1]
    return token if token in SEQUENCES else (stem if stem in SEQUENCES else None)


def find_case_files(inputs: list[Path]) -> dict[str, Path]:
    """Map inputs to ``{sequence: path}`` or ``{"dicom_zip": path}``; errors name what is missing or doubled."""
    if len(inputs) == 1 and inputs[0].is_file() and inputs[0].suffix.lower() == ".zip":
        return {"dicom_zip": inputs[0]}
    if len(inputs) == 1 and inputs[0].is_dir():
        candidates = sorted(p for p in inputs[0].iterdir() if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES))
        source = str(inputs[0])
    else:
        candidates, source = inputs, ", ".join(map(str, inputs))
    found: dict[str, Path] = {}
    for path in candidates:
        if not path.is_file():
            raise InputError(f"{path} is not a file", source=source)
        seq = sequence_of(path)
        if seq is None:
            continue
        if seq in found:
            raise InputError(f"two files for {seq}: {found[seq].name} and {path.name}", source=source)
        found[seq] = path
    missing = [s for s in SEQUENCES if s not in found]
    if missing:
        raise InputError(f"no file for sequence(s) {missing} (found {sorted(found)}); name files like "
                         "<case>_t1.nii.gz, <case>_t1ce.nii.gz, <case>_t2.nii.gz, <case>_flair.nii.gz", source=source)
    return found


def v2_binary_body(files: dict[str, bytes], cam: str) -> tuple[bytes, dict[str, str]]:
    """A V2 request with one BYTES input per file, carried raw after the JSON header."""
    from kserve.protocol.infer_type import InferInput, InferRequest

    inputs = []
    for name, data in files.items():
        tensor = InferInput(name=name, shape=[1], datatype="BYTES")
        tensor.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
        inputs.append(tensor)
    request = InferRequest(model_name="", infer_inputs=inputs, parameters={"cam": cam})
    body, json_length = request.to_rest()
    assert isinstance(body, bytes) and json_length is not None
    return body, {"Inference-Header-Content-Length": str(json_length), "Content-Type": "application/octet-stream"}


def _raise_for_status(response: httpx.Response, url: str) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error") or response.json().get("detail")
        except ValueError:
            detail = response.text[:500]
        raise InputError(f"server answered HTTP {response.status_code}: {detail}", source=url)


def predict_case(url: str, model: str, files: dict[str, Path], *, cam: str = "both", protocol: str = "v2",
                 timeout: float = 300.0) -> dict[str, Any]:
    """Send one case to the transformer and return the result document (with ``cam`` base64 fields)."""
    data = {name: path.read_bytes() for name, path in files.items()}
    base = url.rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        if protocol == "v1":
            endpoint = f"{base}/v1/models/{model}:predict"
            payload = {"instances": [{k: base64.b64encode(v).decode() for k, v in data.items()}],
                       "parameters": {"cam": cam}}
            response = client.post(endpoint, json=payload)
            _raise_for_status(response, endpoint)
            return response.json()["predictions"][0]
        endpoint = f"{base}/v2/models/{model}/infer"
        body, headers = v2_binary_body(data, cam)
        response = client.post(endpoint, content=body, headers=headers)
        _raise_for_status(response, endpoint)
    return result_from_v2(response.json())


def result_from_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the result document from the V2 outputs (``result`` JSON plus the CAM outputs)."""
    outputs = {o["name"]: o for o in doc.get("outputs", [])}
    if "result" not in outputs:
        raise InputError(f"V2 response without a 'result' output (got {sorted(outputs)})")
    result = json.loads(outputs["result"]["data"][0])
    result["cam"] = {}
    if "cam_nifti" in outputs:
        result["cam"]["nifti_gz_b64"] = outputs["cam_nifti"]["data"][0]
    if "cam_png" in outputs:
        result["cam"]["png_b64"] = outputs["cam_png"]["data"][0]
    return result


def write_outputs(result: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>_cam.nii.gz`` / ``<stem>_cam.png`` / ``<stem>_result.json``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    cam = result.get("cam", {})
    for key, suffix in (("nifti_gz_b64", "_cam.nii.gz"), ("png_b64", "_cam.png")):
        if cam.get(key):
            path = out_dir / f"{stem}{suffix}"
            path.write_bytes(base64.b64decode(cam[key]))
            written.append(path)
    path = out_dir / f"{stem}_result.json"
    path.write_text(json.dumps({k: v for k, v in result.items() if k != "cam"}, indent=2))
    written.append(path)
    return written


def format_report(result: dict[str, Any]) -> str:
    """Human-readable summary: grade, probabilities, confidence, review flag, timings."""
    lines = [f"model      {result['model_name']} version {result['model_version']}",
             f"grade      {result['grade']}" + (f" ({result['who_grade']})" if result.get("who_grade") else ""),
             "probs      " + ", ".join(f"{k} {v:.3f}" for k, v in result["probabilities"].items()),
             f"confidence {result['confidence']:.3f}",
             "review     " + ("YES: " + ", ".join(result["review_reasons"]) if result["needs_review"] else "no"),
             "timings    " + ", ".join(f"{k} {v:.0f} ms" for k, v in result["timings_ms"].items())]
    if result.get("cam_peak") is not None:
        lines.append(f"cam peak   {result['cam_peak']:.3g} logit per cell (1.0 in the map)")
    return "\n".join(lines)
