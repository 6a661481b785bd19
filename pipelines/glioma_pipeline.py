"""The gliomagrade Kubeflow pipeline: ingest -> preprocess -> train (CV) -> evaluate -> gate ->
export -> register [-> deploy], with ``dsl.If`` skipping the release when the gate says no.

The same definition runs locally (``kfp.local``) and on a cluster. Cluster-only settings (GPU request,
node selector, tolerations, the S3 secret) are platform config that the local runner ignores.
"""

# No `from __future__ import annotations`: KFP reads the parameter annotations as types.

from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes

from gliomagrade.components import DEFAULT_IMAGE, make_components

PIPELINE_NAME = "gliomagrade-train-gate-release"
S3_SECRET = "gliomagrade-s3"
"""Kubernetes Secret holding the MinIO/S3 credentials (manifests/s3-secret.example.yaml)."""
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "S3_ENDPOINT": "S3_ENDPOINT",
    "S3_USE_HTTPS": "S3_USE_HTTPS",
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
}


def _with_s3(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Credentials reach the pod from the Secret, never from parameters or images (optional locally)."""
    return kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_KEYS, optional=True)


def build_pipeline(image: str = DEFAULT_IMAGE, gpu: bool = True) -> Callable[..., Any]:
    """Return the pipeline function for components running in ``image`` (GPU training if ``gpu``)."""
    ops = make_components(image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Glioma grading: CV training, evaluation gate, ONNX release.")
    def glioma_pipeline(
        cohort_uri: str,
        layout: str = "auto",
        profile: str = "quick",
        task: str = "",
        sequences: str = "",
        model_name: str = "",
        folds: int = 0,
        epochs: int = 0,
        workers: int = 4,
        registry_uri: str = "s3://gliomagrade/registry",
        registered_model: str = "glioma-grade",
        min_auc_lower_ci: float = -1.0,
        min_balanced_accuracy: float = -1.0,
        max_ece: float = -1.0,
        fold_auc_floor: float = -1.0,
        max_regression: float = -1.0,
        promote: bool = True,
        deploy: bool = False,
        namespace: str = "gliomagrade",
        service_name: str = "glioma-grade",
        canary_percent: int = 0,
        node_selector: dict = {},  # noqa: B006 - KFP pipeline parameters are declared by default value
        tolerations: list = [],  # noqa: B006
    ) -> str:
        ing = _with_s3(ops.ingest(cohort_uri=cohort_uri, layout=layout))
        pre = ops.preprocess(cases=ing.outputs["cases"], profile=profile, workers=workers)
        pre.set_cpu_request("4").set_memory_request("8G")
        trn = ops.train(cohort=pre.outputs["cohort"], profile=profile, task=task, sequences=sequences,
                        model_name=model_name, folds=folds, epochs=epochs)
        trn.set_cpu_request("4").set_memory_request("16G").set_memory_limit("32G")
        if gpu:
            trn.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        kubernetes.add_node_selector_json(trn, node_selector)
        kubernetes.add_toleration_json(trn, tolerations)
        ops.evaluate(run=trn.outputs["run"])
        gat = _with_s3(ops.gate(
            run=trn.outputs["run"], registry_uri=registry_uri, model_name=registered_model, profile=profile,
            min_auc_lower_ci=min_auc_lower_ci, min_balanced_accuracy=min_balanced_accuracy, max_ece=max_ece,
            fold_auc_floor=fold_auc_floor, max_regression=max_regression))
        with dsl.If(gat.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - KFP condition
            exp = ops.export(run=trn.outputs["run"], cohort=pre.outputs["cohort"], model_name=registered_model)
            reg = _with_s3(ops.register(
                onnx_model=exp.outputs["onnx_model"], run=trn.outputs["run"], cohort=pre.outputs["cohort"],
                decision=gat.outputs["decision"], registry_uri=registry_uri, model_name=registered_model,
                promote=promote))
            with dsl.If(deploy == True, name="deploy"):  # noqa: E712
                _with_s3(ops.deploy(registry_uri=registry_uri, model_name=registered_model,
                                    version=reg.outputs["Output"], namespace=namespace,
                                    service_name=service_name, canary_percent=canary_percent))
        with dsl.Else(name="gate-failed"):
            rej = ops.rejected(decision=gat.outputs["decision"])
        return dsl.OneOf(reg.outputs["Output"], rej.outputs["Output"])

    return glioma_pipeline
