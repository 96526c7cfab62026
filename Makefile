# One command each: `make sweep` runs the demo, `make test` lints and runs every test (fast and slow).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch pinned here (a local CPU wheel); pyproject keeps torch>=2.4 open for GPU clusters.
TORCH_PIN ?= torch==2.13.0

# Loopback-only Ray and MLflow (see README "Machine notes"): the settings live in loopback.env.
include loopback.env
export $(shell sed -n 's/^\([A-Z_]*\)=.*/\1/p' loopback.env)

.PHONY: setup lint test test-fast sweep bench bench-quick clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev,hf]'
	touch $@

# The formatter's layout and the linter's rules (pyproject.toml [tool.ruff]), checked, never applied.
lint: setup
	$(VENV)/bin/ruff format --check completep_sweep tests benchmarks examples
	$(VENV)/bin/ruff check completep_sweep tests benchmarks examples

# Every test, `slow` (end-to-end on local Ray) included: about 20 minutes on 2 cores.
test: lint
	$(PY) -m pytest --durations=15

# Everything not marked `slow`: about 6 minutes on 2 cores (the whole suite: about 25).
test-fast: setup
	$(PY) -m pytest -m "not slow" --durations=15

SWEEP ?= sweeps/depth-transfer-demo.toml

# Runs (or resumes) the demo, then prints the verdict; re-running skips finished trials.
sweep: setup
	$(VENV)/bin/completep-sweep run $(SWEEP)
	$(VENV)/bin/completep-sweep report $(basename $(notdir $(SWEEP))) --mlflow

# The benchmarks in full mode (the numbers in the README): roughly 35 minutes on 2 cores, most of it
# the calibration studies and the demo sweep of sweep_overhead.py. search_cost.py and optuna_vs_grid.py
# add real trials with --real results/dense-half-octave (after `completep-sweep run
# benchmarks/dense-half-octave.toml`).
BENCHMARKS := step_throughput sweep_overhead calibration search_cost optuna_vs_grid

bench: setup
	set -e; for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py; done

# Each benchmark's --quick smoke mode (about a minute); tests/test_benchmarks.py runs the same.
bench-quick: setup
	set -e; for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py --quick"; $(PY) benchmarks/$$b.py --quick; done

clean:
	rm -rf $(VENV) build *.egg-info
