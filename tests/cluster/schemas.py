"""Schemas the cluster objects are validated against, offline.

- built-in kinds: the Kubernetes JSON schemas of ``kubernetes-validate`` (strict: unknown fields fail);
- PodMonitor / PrometheusRule: the operator's published CRDs (``crds/``), ``openAPIV3Schema`` turned into
  a JSON schema that, like the API server's pruning with ``--validate=strict``, refuses unknown fields;
- InferenceService: a JSON schema generated from the kserve SDK's OpenAPI models (``kserve.models``)
  and the Kubernetes client's models they reference, also refusing unknown fields.
"""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_DIR = Path(__file__).parent / "crds"
K8S_VERSION = "1.33"
"""Kubernetes minor version of manifests/kind-config.yaml's node image."""
CRD_FILES = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
_SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
            "float": {"type": "number"}, "object": {}, "datetime": {"type": "string"}, "date": {"type": "string"},
            "ResourceQuantity": {"type": ["string", "number"]}}


def _close_objects(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 structural schema -> JSON schema that rejects fields the CRD does not declare."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "description"}
    if "properties" in out:
        out["properties"] = {k: _close_objects(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _close_objects(out[key])
    if "anyOf" in out:
        out["anyOf"] = [_close_objects(s) for s in out["anyOf"]]
    return out


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    """Validator of one CRD version's openAPIV3Schema (from the file in ``crds/``)."""
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, f"wrong CRD file for {kind}"
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(_close_objects(entry["schema"]["openAPIV3Schema"]))


def _model_class(name: str) -> type | None:
    """A kserve or kubernetes client model class by its OpenAPI name."""
    import kserve.models
    import kubernetes.client

    return getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)


def _required(cls: type) -> list[str]:
    """Attributes whose setter refuses None (the generator's translation of the schema's ``required``)."""
    source = inspect.getsource(cls)
    return sorted(set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", source)))


def _type_schema(type_name: str, defs: dict[str, Any], unknown: set[str]) -> dict[str, Any]:
    """JSON schema of an OpenAPI type string such as ``list[V1Container]`` or ``dict(str, str)``."""
    if type_name in _SCALARS:
        return dict(_SCALARS[type_name])
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        return {"type": "array", "items": _type_schema(m.group(1), defs, unknown)}
    if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        return {"type": "object", "additionalProperties": _type_schema(m.group(1), defs, unknown)}
    cls = _model_class(type_name)
    if cls is None:  # referenced by the kserve SDK but absent from this kubernetes client: left open
        unknown.add(type_name)
        return {"type": "object"}
    if type_name not in defs:
        defs[type_name] = {}  # placeholder first: models are recursive (JSONSchemaProps)
        attr_map = cls.attribute_map
        defs[type_name] = {
            "type": "object",
            "properties": {attr_map[a]: _type_schema(t, defs, unknown) for a, t in cls.openapi_types.items()},
            "required": [attr_map[a] for a in _required(cls)],
            "additionalProperties": False,
        }
    return {"$ref": f"#/definitions/{type_name}"}


@functools.cache
def inference_service_validator() -> jsonschema.Draft7Validator:
    """Validator of a v1beta1 InferenceService built from the kserve SDK's models."""
    defs: dict[str, Any] = {}
    unknown: set[str] = set()
    root = _type_schema("V1beta1InferenceService", defs, unknown)
    defs["V1beta1InferenceService"]["required"] = ["apiVersion", "kind", "metadata", "spec"]
    props = defs["V1beta1InferenceService"]["properties"]
    props["apiVersion"] = {"const": "serving.kserve.io/v1beta1"}
    props["kind"] = {"const": "InferenceService"}
    return jsonschema.Draft7Validator({**root, "definitions": defs})


def errors_of(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of one object (empty list: valid); names the object in each message."""
    import kubernetes_validate

    api_version, kind = obj.get("apiVersion", "?"), obj.get("kind", "?")
    name = f"{kind} {obj.get('metadata', {}).get('namespace', '')}/{obj.get('metadata', {}).get('name', '?')}"
    if kind == "InferenceService":
        validator = inference_service_validator()
    elif (api_version, kind) in CRD_FILES:
        validator = crd_validator(api_version, kind)
    else:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{name}: {exc.message} at {'/'.join(map(str, exc.path))}"]
        return []
    problems = [f"{name}: {e.message} at {'/'.join(map(str, e.absolute_path))}" for e in validator.iter_errors(obj)]
    # custom resources: validate metadata as an ObjectMeta (through a ConfigMap carrying it)
    shell = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}
    try:
        kubernetes_validate.validate(shell, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"{name} metadata: {exc.message}")
    return problems


def load_documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a multi-document text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]
