# failure-lab: `make demo` runs the embedded default with a scripted fault; `make test` runs the
# checks and the test suite against real Redis and Prometheus. Both install what is missing;
# `make test` also builds the pinned backends (`make backends`), which `make demo` does not need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYNCED := $(VENV)/.synced
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
UV_VERSION := 0.13.8
# Debian packages: the test suite starts a real redis-server, runs the stack's load balancer
# (haproxy/haproxy.cfg) with HAProxy and the DNS it finds replicas by with dnsmasq, and opens
# the HTML report and /docs in a real headless chromium; benchmarks use wrk. Prometheus,
# promtool and kustomize come from `make backends`, at the versions of .env.
APT_PACKAGES := redis-server wrk chromium haproxy dnsmasq-base

.PHONY: demo serve test lint typecheck pytest backends system-deps bench clean

demo: $(SYNCED)
	$(BIN)/failure-lab demo

serve: $(SYNCED)
	$(BIN)/failure-lab serve

test: system-deps $(SYNCED) lint typecheck backends pytest

lint: $(SYNCED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(SYNCED)
	$(BIN)/mypy

pytest: system-deps backends $(SYNCED)
	$(BIN)/pytest

# Prometheus and promtool, Jaeger, vegeta and kustomize at the versions of .env, built from
# their Go modules into ~/.cache/failure-lab/backends (FAILURE_LAB_BACKENDS_DIR) the first time only.
backends:
	scripts/backends.sh

bench: system-deps $(SYNCED)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/generator.py

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	PATH="$$PATH:/usr/sbin" command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	PATH="$$PATH:/usr/sbin" command -v dnsmasq >/dev/null || missing="$$missing dnsmasq-base"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

$(SYNCED): pyproject.toml uv.lock
	@[ -x $(BIN)/python ] || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --locked --inexact --quiet
	@touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
