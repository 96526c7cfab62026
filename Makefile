# One command each: `make sweep` runs the demo, `make test` runs every test (fast and slow).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch pinned here (a local CPU wheel); pyproject keeps torch>=2.4 open for GPU clusters.
TORCH_PIN ?= torch==2.13.0

# Loopback-only Ray and MLflow (see README "Machine notes"): the settings live in loopback.env.
include loopback.env
export $(shell sed -n 's/^\([A-Z_]*\)=.*/\1/p' loopback.env)

.PHONY: setup test test-fast sweep bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -m "slow or not slow"

test-fast: setup
	$(PY) -m pytest -m "not slow"

SWEEP ?= sweeps/depth-transfer-demo.toml

# Runs (or resumes) the demo, then prints the verdict; re-running skips finished trials.
sweep: setup
	$(VENV)/bin/completep-sweep run $(SWEEP)
	$(VENV)/bin/completep-sweep report $(basename $(notdir $(SWEEP)))

bench: setup
	$(PY) benchmarks/step_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
