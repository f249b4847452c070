# Stratus: the commands everything relies on (see README.md).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The operator image runs Debian bookworm's python3, 3.11 (Dockerfile); the venv, and so the tests
# and CI, run the same minor version, and `make venv` refuses a .venv built with another.
IMAGE_PYTHON := 3.11
PYTHON ?= python$(IMAGE_PYTHON)
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= .stratus
# pytest's own arguments, e.g. make test PYTEST_ARGS='-k smoke -x'
PYTEST_ARGS ?=
# The Python dependencies, pinned with hashes: the venv installs dev.txt, the image image.txt.
LOCKS := hack/requirements
# uv's own arguments for `make lock`, e.g. LOCK_ARGS=--upgrade (or --upgrade-package kopf)
LOCK_ARGS ?=
# Which binaries a target reuses, finds cached or builds, said before it starts (standard library
# only: it runs before the venv exists).
PLAN := PYTHONPATH=operator $(PYTHON) -m stratus.devcluster.binaries plan

.PHONY: help venv lock plan-test plan-dev binaries lint-tools peer deps images lint unit e2e e2e-kind test bench dev dev-down crds manifests

help:
	@echo "make dev    - start the local GPU cluster (and the operator) from a fresh checkout"
	@echo "make test   - lint, unit tests and end-to-end tests on a fresh local cluster"
	@echo "make lint | unit | e2e | e2e-kind | binaries | peer | images | crds | dev-down | lock"

# The virtualenv is rebuilt when the project's dependencies change, from the lock file only
# (--require-hashes: every package pinned and checked); pip's cache lives outside.
$(VENV)/.installed: pyproject.toml $(LOCKS)/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCKS)/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(VENV)/.installed
	@$(BIN)/python -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(IMAGE_PYTHON)")' \
	  || { echo "$(VENV) is not Python $(IMAGE_PYTHON), the image's: rm -rf $(VENV) and rerun" >&2; exit 1; }

# Regenerates the lock files from pyproject.toml with uv: the venv's (the dev extra, which holds
# every other) and the image's (runtime and s3), held to the venv's pins so the two agree. Pins
# that still satisfy pyproject.toml are kept. tests/unit/test_lock.py fails when they drift.
lock: venv
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version $(IMAGE_PYTHON) \
	  --generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS) \
	  --extra dev -o $(LOCKS)/dev.txt
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version $(IMAGE_PYTHON) \
	  --generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS) \
	  --extra s3 -c $(LOCKS)/dev.txt -o $(LOCKS)/image.txt

# Binaries of the pinned versions in STRATUS_BIN_DIR or KUBEBUILDER_ASSETS are reused, not built.
binaries:
	PYTHON=$(PYTHON) hack/build-binaries.sh

# Only what `make lint` runs besides the venv: helm and the kube-score scanner, from Go modules.
lint-tools:
	PYTHON=$(PYTHON) hack/build-binaries.sh lint

# The peer the benchmarks compare against: the Kubeflow training operator, from its Go module.
peer:
	PYTHON=$(PYTHON) hack/build-binaries.sh peer

plan-test:
	@$(PLAN) all peer

plan-dev:
	@$(PLAN) all

deps:
	hack/install-deps.sh

# The project's images (operator, pause, examples), built with podman from the repository's
# Dockerfiles without a registry, cached outside the tree and loaded into the real node.
images: venv deps
	STRATUS_STATE_DIR="$${STRATUS_STATE_DIR:-$(CURDIR)/.stratus}" hack/build-images.sh

# The last step scans the chart and manifests/install.yaml with kube-score; each finding is fixed
# or waived, with its reason, in hack/kube-score.yaml.
lint: venv lint-tools
	$(BIN)/ruff check operator tests examples bench
	$(BIN)/ruff format --check operator tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile examples/train/Dockerfile examples/serve/Dockerfile \
	  hack/tools/pause/Dockerfile
	$(BIN)/python -m stratus.devcluster.policyscan

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

e2e: venv binaries peer deps images
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# Benchmarks at full size on a cluster of their own; results in bench/results/full.json.
bench: venv binaries peer deps images
	$(BIN)/python -m bench --size full

e2e-kind: venv binaries peer deps
	hack/e2e-kind.sh $(PYTEST_ARGS)

test: plan-test lint binaries peer deps images
	$(BIN)/pytest tests $(PYTEST_ARGS)

# The operator runs in the foreground (Ctrl-C stops it); the cluster keeps running until
# `make dev-down`.
dev: plan-dev venv binaries deps images
	$(BIN)/stratus dev up --state-dir $(STATE_DIR)
	eval "$$($(BIN)/stratus dev env --state-dir $(STATE_DIR))"; \
	  kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	  kubectl wait --for=condition=Established --timeout=60s -f crds/; \
	  $(BIN)/stratus dev simulate examples/*.yaml | kubectl apply -f -
	@echo
	@echo 'The local GPU cluster is up. To use it: eval "$$($(BIN)/stratus dev env --state-dir $(STATE_DIR))"'
	@echo 'then: kubectl get nodes; kubectl get stratus -A'
	@echo 'Starting the operator (metrics on :8080/metrics)...'
	$(BIN)/stratus operator --kubeconfig $(STATE_DIR)/kubeconfig

# One generator, two copies: crds/ for kubectl, the chart's files/crds/ (templates/crds.yaml).
crds: venv
	$(BIN)/stratus crds --out crds
	$(BIN)/stratus crds --out charts/stratus/files/crds

# The plain-manifest install, rendered from the chart with its default values.
manifests: venv binaries
	$(BIN)/python -m stratus.devcluster.packaging render-manifests > manifests/install.yaml

dev-down: venv
	$(BIN)/stratus dev down --state-dir $(STATE_DIR)
