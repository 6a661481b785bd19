#!/usr/bin/env bash
# Delete the local gliomagrade cluster (kind or minikube) and everything in it.
#   scripts/cluster-down.sh [--dry-run]        (DRY_RUN=1 works too)
set -euo pipefail

CLUSTER_PROVIDER="${CLUSTER_PROVIDER:-kind}"
CLUSTER_NAME="${CLUSTER_NAME:-gliomagrade}"
DRY_RUN="${DRY_RUN:-0}"

log() { printf '==> %s\n' "$*" >&2; }
run() {
  printf '+ %s\n' "$*"
  if [[ "${DRY_RUN}" != 1 ]]; then "$@"; fi
}

for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "error: unknown argument '${arg}' (expected --dry-run)" >&2; exit 2 ;;
  esac
done

log "deleting ${CLUSTER_PROVIDER} cluster '${CLUSTER_NAME}'"
case "${CLUSTER_PROVIDER}" in
  kind)
    if [[ "${DRY_RUN}" == 1 ]] || kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
      run kind delete cluster --name "${CLUSTER_NAME}"
    else
      log "no kind cluster '${CLUSTER_NAME}': nothing to do"
    fi ;;
  minikube) run minikube delete -p "${CLUSTER_NAME}" ;;
  *) echo "error: CLUSTER_PROVIDER must be kind or minikube, got '${CLUSTER_PROVIDER}'" >&2; exit 2 ;;
esac
