# The two commands: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test unit netns bench wheel-check clean

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	$(PY) scripts/demo.py

test: bootstrap
	$(PY) -m pytest -q tests netns_tests examples/labs

unit: bootstrap
	$(PY) -m pytest -q tests

netns: bootstrap
	$(PY) -m pytest -q netns_tests

# Not part of `make test`: timings belong in benchmarks. A full table (1M routes) by default;
# BENCH_ROUTES=100000 BENCH_QUICK=1 for a quick run.
bench: bootstrap
	$(PY) benchmarks/run.py

# The wheel, built and installed with pip into a fresh venv outside the repository.
wheel-check:
	bash scripts/wheel-check.sh

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
