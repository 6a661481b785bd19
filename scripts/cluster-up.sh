#!/usr/bin/env bash
# Bring up a local Kubernetes cluster for gliomagrade (docs/cluster.md):
#   kind (default) or minikube -> cert-manager -> KServe (RawDeployment) -> Kubeflow Pipelines standalone
#   (with its MinIO) -> kube-prometheus-stack -> project images -> S3 secret, ServiceAccount, RBAC, monitors.
# Idempotent: every step applies, upgrades or checks before creating, so re-running is safe.
#
#   scripts/cluster-up.sh [--dry-run] [STEP...]     STEP: all (default) cluster platform images app
#   DRY_RUN=1 scripts/cluster-up.sh                 print the commands instead of running them
set -euo pipefail

# ---- pinned versions ---------------------------------------------------------------------------
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"
MINIKUBE_K8S_VERSION="${MINIKUBE_K8S_VERSION:-v1.33.1}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.17.2}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.21.0}"   # the kserve Python SDK of the serving image
KFP_VERSION="${KFP_VERSION:-2.5.0}"
KUBE_PROMETHEUS_STACK_VERSION="${KUBE_PROMETHEUS_STACK_VERSION:-75.6.1}"
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"

# ---- settings ------------------------------------------------------------------------------------
CLUSTER_PROVIDER="${CLUSTER_PROVIDER:-kind}"        # kind | minikube
CLUSTER_NAME="${CLUSTER_NAME:-gliomagrade}"
NAMESPACE="${NAMESPACE:-gliomagrade}"
MONITORING_NAMESPACE="${MONITORING_NAMESPACE:-monitoring}"
KFP_NAMESPACE="kubeflow"
COMPONENTS_IMAGE="ghcr.io/gliomagrade/gliomagrade:${IMAGE_TAG}"
SERVING_IMAGE="ghcr.io/gliomagrade/gliomagrade-serving:${IMAGE_TAG}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN="${DRY_RUN:-0}"

log() { printf '==> %s\n' "$*" >&2; }

# run CMD...: print it, then run it (only print it in dry-run mode)
run() {
  printf '+ %s\n' "$*"
  if [[ "${DRY_RUN}" != 1 ]]; then "$@"; fi
}

# apply_stdin CMD...: CMD writes YAML that is piped into `kubectl apply -f -` (create-or-update)
apply_stdin() {
  printf '+ %s | kubectl apply -f -\n' "$*"
  if [[ "${DRY_RUN}" != 1 ]]; then "$@" | kubectl apply -f -; fi
}

need() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || { echo "error: ${tool} is required (docs/cluster.md)" >&2; exit 1; }
  done
}

cluster_exists() {
  if [[ "${CLUSTER_PROVIDER}" == kind ]]; then
    kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"
  else
    minikube status -p "${CLUSTER_NAME}" >/dev/null 2>&1
  fi
}

step_cluster() {
  log "cluster: ${CLUSTER_PROVIDER} cluster '${CLUSTER_NAME}' (${KIND_NODE_IMAGE})"
  if [[ "${DRY_RUN}" != 1 ]] && cluster_exists; then
    log "cluster '${CLUSTER_NAME}' already exists: kept"
  elif [[ "${CLUSTER_PROVIDER}" == kind ]]; then
    run kind create cluster --name "${CLUSTER_NAME}" --config "${ROOT}/manifests/kind-config.yaml" \
      --image "${KIND_NODE_IMAGE}" --wait 180s
  elif [[ "${CLUSTER_PROVIDER}" == minikube ]]; then
    # add --gpus all (docker driver + NVIDIA container toolkit) for a GPU node: docs/cluster.md
    run minikube start -p "${CLUSTER_NAME}" --kubernetes-version "${MINIKUBE_K8S_VERSION}" --cpus 6 --memory 12g
  else
    echo "error: CLUSTER_PROVIDER must be kind or minikube, got '${CLUSTER_PROVIDER}'" >&2
    exit 2
  fi
}

step_platform() {
  log "cert-manager ${CERT_MANAGER_VERSION} (KServe's webhooks need it)"
  run helm upgrade --install cert-manager cert-manager --repo https://charts.jetstack.io \
    --version "${CERT_MANAGER_VERSION}" --namespace cert-manager --create-namespace \
    --set crds.enabled=true --wait --timeout 10m

  log "KServe ${KSERVE_VERSION} in Standard (RawDeployment) mode: no Knative, no Istio"
  run helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version "${KSERVE_VERSION}" \
    --namespace kserve --create-namespace --wait
  run helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve --version "${KSERVE_VERSION}" \
    --namespace kserve --set kserve.controller.deploymentMode=RawDeployment --wait --timeout 10m

  log "Kubeflow Pipelines ${KFP_VERSION} standalone (namespace ${KFP_NAMESPACE}, with its MinIO)"
  run kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${KFP_VERSION}"
  run kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  run kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${KFP_VERSION}"
  run kubectl -n "${KFP_NAMESPACE}" wait --for=condition=Available --timeout=15m deployment --all

  log "kube-prometheus-stack ${KUBE_PROMETHEUS_STACK_VERSION} (Prometheus operator, Prometheus, Grafana)"
  run helm upgrade --install kube-prometheus-stack kube-prometheus-stack \
    --repo https://prometheus-community.github.io/helm-charts --version "${KUBE_PROMETHEUS_STACK_VERSION}" \
    --namespace "${MONITORING_NAMESPACE}" --create-namespace \
    --set grafana.sidecar.dashboards.enabled=true --set grafana.sidecar.dashboards.label=grafana_dashboard \
    --wait --timeout 15m
}

step_images() {
  log "images: build ${COMPONENTS_IMAGE} and ${SERVING_IMAGE}, load them into the cluster"
  [[ "${DRY_RUN}" == 1 ]] || need docker
  run docker build -f "${ROOT}/docker/components.Dockerfile" -t "${COMPONENTS_IMAGE}" "${ROOT}"
  run docker build -f "${ROOT}/docker/serving.Dockerfile" -t "${SERVING_IMAGE}" "${ROOT}"
  local image
  for image in "${COMPONENTS_IMAGE}" "${SERVING_IMAGE}"; do
    if [[ "${CLUSTER_PROVIDER}" == kind ]]; then
      run kind load docker-image "${image}" --name "${CLUSTER_NAME}"
    else
      run minikube -p "${CLUSTER_NAME}" image load "${image}"
    fi
  done
}

# s3_secret NS: the gliomagrade-s3 Secret in NS, made from KFP's MinIO secret (no credential in the repo)
s3_secret() {
  local ns="$1" access secret
  if [[ "${DRY_RUN}" == 1 ]]; then
    access='<from mlpipeline-minio-artifact>'
    secret='<from mlpipeline-minio-artifact>'
  else
    access="$(kubectl -n "${KFP_NAMESPACE}" get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)"
    secret="$(kubectl -n "${KFP_NAMESPACE}" get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)"
  fi
  apply_stdin kubectl -n "${ns}" create secret generic gliomagrade-s3 --dry-run=client -o yaml \
    --from-literal=AWS_ACCESS_KEY_ID="${access}" --from-literal=AWS_SECRET_ACCESS_KEY="${secret}" \
    --from-literal=S3_ENDPOINT=minio-service.kubeflow:9000 --from-literal=S3_USE_HTTPS=0 \
    --from-literal=S3_VERIFY_SSL=0 --from-literal=AWS_DEFAULT_REGION=us-east-1
  run kubectl -n "${ns}" annotate --overwrite secret gliomagrade-s3 \
    serving.kserve.io/s3-endpoint=minio-service.kubeflow:9000 serving.kserve.io/s3-usehttps=0 \
    serving.kserve.io/s3-region=us-east-1 serving.kserve.io/s3-verifyssl=0
}

step_app() {
  log "gliomagrade: namespace, ServiceAccount, RBAC, PodMonitor, PrometheusRule, Grafana dashboard"
  run kubectl apply -k "${ROOT}/manifests"
  log "S3 secret gliomagrade-s3 in ${NAMESPACE} (serving) and ${KFP_NAMESPACE} (pipeline pods)"
  s3_secret "${NAMESPACE}"
  s3_secret "${KFP_NAMESPACE}"
  log "registry bucket 'gliomagrade' in MinIO"
  run kubectl -n "${KFP_NAMESPACE}" delete job gliomagrade-create-bucket --ignore-not-found
  run kubectl apply -f "${ROOT}/manifests/create-bucket-job.yaml"
  run kubectl -n "${KFP_NAMESPACE}" wait --for=condition=complete --timeout=5m job/gliomagrade-create-bucket
  log "done: docs/cluster.md says how to submit the pipeline, call the endpoint and open Grafana"
}

main() {
  local steps=() arg
  for arg in "$@"; do
    case "${arg}" in
      --dry-run) DRY_RUN=1 ;;
      all | cluster | platform | images | app) steps+=("${arg}") ;;
      -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; return 0 ;;
      *) echo "error: unknown argument '${arg}' (expected --dry-run, all, cluster, platform, images, app)" >&2; return 2 ;;
    esac
  done
  [[ ${#steps[@]} -gt 0 ]] || steps=(all)
  [[ "${DRY_RUN}" == 1 ]] && log "dry run: printing the commands only"
  if [[ "${DRY_RUN}" != 1 ]]; then
    need kubectl helm
    if [[ "${CLUSTER_PROVIDER}" == kind ]]; then need kind; else need minikube; fi
  fi
  local step
  for step in "${steps[@]}"; do
    case "${step}" in
      all) step_cluster; step_platform; step_images; step_app ;;
      *) "step_${step}" ;;
    esac
  done
}

main "$@"
