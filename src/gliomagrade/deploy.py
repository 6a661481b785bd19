"""Create or patch the KServe InferenceService that serves one registry version (cluster only).

The object is built as a plain dict (validated offline against KServe's InferenceService schema in
tests/cluster) and applied with the Kubernetes API: create when absent, JSON merge-patch when present,
so a pipeline rerun never fails because the service already exists. The same object is what the Helm
chart ``charts/gliomagrade-serving`` renders with the same values (checked by the tests).

Both containers are pinned to one version number: the Triton predictor downloads the version's folder
(``storageUri``) and the transformer reads the same version's manifest and head from the registry.
``glioma model rollback`` only moves the registry pointer; re-point the service with
``python -m gliomagrade.deploy --version promoted ...`` (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import copy
import logging
from typing import Any

from gliomagrade.errors import ConfigError

log = logging.getLogger(__name__)

SERVING_IMAGE = "ghcr.io/gliomagrade/gliomagrade-serving:0.1.0"
SERVICE_ACCOUNT = "gliomagrade-s3"
"""ServiceAccount carrying the S3 secret and the serving.kserve.io/s3-* annotations (manifests/)."""
S3_SECRET = "gliomagrade-s3"
"""Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_ENDPOINT, S3_USE_HTTPS, AWS_DEFAULT_REGION."""
RAW, SERVERLESS = "RawDeployment", "Serverless"
GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
RESTRICTED = {
    "runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}
"""Container securityContext of the transformer (the serving image runs as uid 10001)."""


def _resources(gpu: bool) -> dict[str, Any]:
    """Requests and limits of one container (the chart's defaults); one ``nvidia.com/gpu`` when ``gpu``."""
    limits = {"cpu": "2", "memory": "4Gi", **({"nvidia.com/gpu": "1"} if gpu else {})}
    return {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": limits}


def transformer_args(model_name: str, registry_uri: str, version: str) -> list[str]:
    """Flags of ``gliomagrade.serving.transformer``; KServe appends ``--predictor_host`` and ``--http_port``.

    ``--model_name`` is given explicitly: KServe would otherwise append the InferenceService name, but the
    transformer calls Triton's ``/v2/models/<model_name>/infer`` and Triton names the model after the
    repository folder ``<model_name>/``.
    """
    return ["--model_name", model_name, "--model_dir", registry_uri, "--model_version", str(version),
            "--predictor_protocol", "v2"]


def inference_service(
    *, name: str, namespace: str, model_name: str, version: str, registry_uri: str, storage_uri: str,
    serving_image: str = SERVING_IMAGE, canary_percent: int = 0, gpu: bool = False,
    deployment_mode: str = RAW,
) -> dict[str, Any]:
    """The InferenceService: transformer (preprocess + CAM) in front of a Triton ONNX predictor (V2)."""
    if not 0 <= int(canary_percent) <= 100:
        raise ConfigError(f"canary_percent must be within 0..100, got {canary_percent}")
    if canary_percent and deployment_mode != SERVERLESS:
        raise ConfigError(f"canary_percent={canary_percent} needs KServe Serverless (Knative) mode; in "
                          f"{deployment_mode} KServe replaces the pods with a rolling update and splits no traffic")
    if deployment_mode not in (RAW, SERVERLESS):
        raise ConfigError(f"deployment_mode must be {RAW!r} or {SERVERLESS!r}, got {deployment_mode!r}")
    predictor: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "minReplicas": 1,
        "model": {
            "modelFormat": {"name": "onnx"},
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "resources": _resources(gpu),
        },
    }
    transformer: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "minReplicas": 1,
        "containers": [{
            "name": "kserve-container",
            "image": serving_image,
            "imagePullPolicy": "IfNotPresent",
            "args": transformer_args(model_name, registry_uri, version),
            "envFrom": [{"secretRef": {"name": S3_SECRET}}],
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"}],
            "ports": [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}],
            "resources": _resources(False),
            "securityContext": RESTRICTED,
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
    }
    if canary_percent:
        predictor["canaryTrafficPercent"] = transformer["canaryTrafficPercent"] = int(canary_percent)
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "gliomagrade-serving", "app.kubernetes.io/part-of": "gliomagrade",
                       "gliomagrade/model": model_name, "gliomagrade/model-version": str(version)},
            "annotations": {"serving.kserve.io/deploymentMode": deployment_mode},
        },
        "spec": {"predictor": predictor, "transformer": transformer},
    }


def merge_patch(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge-patch for an existing service: as ``body``, plus ``null`` to clear a previous canary."""
    patch = copy.deepcopy(body)
    for component in ("predictor", "transformer"):
        patch["spec"][component].setdefault("canaryTrafficPercent", None)
    return patch


def apply_inference_service(body: dict[str, Any], api: Any | None = None) -> str:
    """Create the InferenceService, or merge-patch it when it already exists; returns 'created'/'patched'.

    ``api`` is a ``kubernetes.client.CustomObjectsApi``; by default one from the in-cluster config
    (a pipeline pod) or the local kubeconfig.
    """
    from kubernetes.client.exceptions import ApiException

    api = api or _custom_objects_api()
    meta = body["metadata"]
    where = {"group": GROUP, "version": API_VERSION, "namespace": meta["namespace"], "plural": PLURAL}
    try:
        api.get_namespaced_custom_object(name=meta["name"], **where)
    except ApiException as exc:
        if exc.status != 404:
            raise
        try:
            api.create_namespaced_custom_object(body=body, **where)
        except ApiException as race:
            if race.status != 409:  # 409: created by a concurrent run between our get and create -> patch
                raise
        else:
            log.info("created InferenceService %s/%s", meta["namespace"], meta["name"])
            return "created"
    api.patch_namespaced_custom_object(name=meta["name"], body=merge_patch(body), **where)
    log.info("patched InferenceService %s/%s", meta["namespace"], meta["name"])
    return "patched"


def _custom_objects_api() -> Any:
    """CustomObjectsApi from the in-cluster config, else from ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()  # its patch sends application/merge-patch+json


def deploy_version(
    registry_uri: str, model_name: str, version: str, *, namespace: str, service_name: str, canary_percent: int = 0,
    serving_image: str = SERVING_IMAGE, gpu: bool = False, deployment_mode: str = RAW, api: Any | None = None,
) -> str:
    """Point the InferenceService at ``version`` (a number, 'promoted' or 'latest') of ``model_name``."""
    from gliomagrade.registry import triton_storage_uri

    storage_uri = triton_storage_uri(registry_uri, model_name, version)
    number = storage_uri.rstrip("/").rsplit("/", 1)[-1]
    body = inference_service(
        name=service_name, namespace=namespace, model_name=model_name, version=number, registry_uri=registry_uri,
        storage_uri=storage_uri, serving_image=serving_image, canary_percent=canary_percent, gpu=gpu,
        deployment_mode=deployment_mode,
    )
    action = apply_inference_service(body, api)
    log.info("%s %s/%s -> %s version %s (%s)", action, namespace, service_name, model_name, number, storage_uri)
    return action


def main(argv: list[str] | None = None) -> int:
    """``python -m gliomagrade.deploy``: (re-)point the service, e.g. after ``glioma model rollback``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--registry-uri", required=True, help="registry store URI, e.g. s3://gliomagrade/registry")
    parser.add_argument("--model", default="glioma-grade", help="registered model name")
    parser.add_argument("--version", default="promoted", help="version number, 'promoted' or 'latest'")
    parser.add_argument("--namespace", default="gliomagrade")
    parser.add_argument("--service", default="glioma-grade", help="InferenceService name")
    parser.add_argument("--canary-percent", type=int, default=0, help="Serverless mode only")
    parser.add_argument("--mode", choices=(RAW, SERVERLESS), default=RAW, help="KServe deployment mode")
    parser.add_argument("--image", default=SERVING_IMAGE, help="transformer image")
    parser.add_argument("--gpu", action="store_true", help="request one nvidia.com/gpu for the predictor")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    action = deploy_version(args.registry_uri, args.model, args.version, namespace=args.namespace,
                            service_name=args.service, canary_percent=args.canary_percent, serving_image=args.image,
                            gpu=args.gpu, deployment_mode=args.mode)
    print(f"{action} {args.namespace}/{args.service}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
