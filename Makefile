# Quick start: `make demo` and `make test`. Both set themselves up and are quiet when already set up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSPKGS := haproxy prometheus nftables wrk chromium
SYSSTAMP := $(VENV)/.system-packages

.PHONY: setup system-packages sandbox-cache demo test test-fast lint bench clean gpu-check

setup: $(STAMP) $(SYSSTAMP)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "error: Python >= 3.11 is needed ($(PYTHON) is $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11 or newer" >&2; exit 2; }
	@$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(VENV)/bin/python
	@echo "installing Python packages into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' >$(VENV)/pip.log 2>&1 \
	  || { grep -vE "is ignored" $(VENV)/pip.log | tail -30; echo "error: pip install failed (full log: $(VENV)/pip.log)" >&2; exit 2; }
	@$(BIN)/python -c 'import harness, tritonclient.http, locust, chaoslib, pandas, pyarrow' \
	  || { echo "error: Python packages did not install; see the pip output above" >&2; exit 2; }
	@touch $@

# Debian packages the local platform runs: installed when root, otherwise a clear message.
$(SYSSTAMP): $(VENV)/bin/python
	@missing=""; for p in haproxy prometheus nft wrk chromium; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $(SYSPKGS) ..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SYSPKGS)) >/tmp/harness-apt.log 2>&1 \
	      || { echo "error: apt-get failed, see /tmp/harness-apt.log" >&2; exit 2; }; \
	  else \
	    echo "error: missing programs:$$missing. Install them with: sudo apt-get install -y $(SYSPKGS)" >&2; exit 2; \
	  fi; \
	fi
	@touch $@

system-packages: $(SYSSTAMP)

demo: setup
	@$(BIN)/harness demo

# The real-cluster tests (tests/k8s) mostly wait on the cluster and the others on local processes, so they run
# side by side, each in a pytest process and temp folder of its own; the cluster tests' output follows.
test: setup sandbox-cache
	@$(BIN)/ruff check harness tests loadprofiles
	@$(BIN)/mypy
	@rm -f .pytest-k8s.log; \
	$(BIN)/python -m pytest -q --durations=10 --basetemp=/tmp/harness-pytest-k8s tests/k8s $(PYTEST_ARGS) \
	  >.pytest-k8s.log 2>&1 & k8s=$$!; trap 'kill $$k8s 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest -q --durations=15 --basetemp=/tmp/harness-pytest-local --ignore=tests/k8s $(PYTEST_ARGS); \
	local=$$?; wait $$k8s; cluster=$$?; echo "---- tests/k8s, run beside the others ----"; cat .pytest-k8s.log; \
	test $$local -eq 0 -a $$cluster -eq 0

# The real-cluster tests (tests/k8s) run a Kubernetes built from Debian's source: as root, install its
# Debian packages and build the binaries into the cache once (about 11 minutes on 2 cores, niced).
sandbox-cache: setup
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m harness.sandbox.build >/dev/null || exit 2; \
	else echo "not root: the real-cluster tests (tests/k8s) will be skipped"; fi

lint: setup
	@$(BIN)/ruff check harness tests loadprofiles
	@$(BIN)/mypy

# On a GPU machine: the demo suite with GPU instances, as a pass/fail table (exit 3 without a GPU).
# No setup dependency: it must run offline from a copied tree with its venv carried along.
gpu-check:
	@scripts/gpu_check.sh

bench: setup
	@$(BIN)/harness bench all

clean:
	-@$(BIN)/harness cleanup 2>/dev/null
	rm -rf $(VENV) .harness .mypy_cache .ruff_cache .pytest_cache
