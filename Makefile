# Two commands do all the set-up on a fresh Debian machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := haproxy prometheus prometheus-alertmanager socat postgresql chromium awscli jq curl
SCENARIO ?= healthy

.PHONY: demo test system venv lint bench clean

demo: system venv
	$(BIN)/shiftover demo --scenario $(SCENARIO)

test: system venv lint
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: system venv
	$(BIN)/python benchmarks/rollback.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python benchmarks/aws_routers.py
	$(BIN)/python benchmarks/detection.py
	$(BIN)/python benchmarks/latency_detection.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/simulate.py

# HAProxy, Prometheus, Alertmanager, PostgreSQL, Chromium (the HTML reports' browser test), and the aws CLI,
# jq, socat and curl (the runbook's hand-rollback commands, run as pasted by its tests) come from Debian's packages. Their services
# are not started: shiftover and its tests run the binaries themselves on 127.0.0.1
# (PostgreSQL as the postgres user, in a temporary directory: it refuses to run as root).
system:
	@missing=""; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	test -x /usr/bin/aws || missing="$$missing awscli"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "shiftover needs the Debian packages:$$missing"; \
	    echo "Run as root, or: sudo apt-get install -y$$missing"; exit 2; \
	  fi; \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info

# The long chaos suite (tests/chaos, docs/reliability.md): 60 SIGKILLs of `shiftover run`
# against a real HAProxy with live traffic, and every fault three times. `make test` runs
# the quick version (12 kills, each fault once). One JSON line of figures per test goes to
# $(CHAOS_REPORT); SHIFTOVER_CHAOS_KILLS, _REPEAT and _SEED override the profile.
.PHONY: chaos
CHAOS_REPORT ?= /tmp/shiftover-chaos/report.jsonl
chaos: system venv
	SHIFTOVER_CHAOS=long SHIFTOVER_CHAOS_REPORT=$(CHAOS_REPORT) $(BIN)/python -m pytest -q -p no:cacheprovider tests/chaos
