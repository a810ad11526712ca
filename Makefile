# Two commands for a newcomer: `make demo` (the main job) and `make test` (the whole suite).
# Both run `make setup` first; setup is idempotent (a stamp file records a finished install).
# `make test` fails when mmseqs2 / ncbi-blast+ are missing (their tests would only skip);
# PROTEIN_LLM_ALLOW_MISSING_TOOLS=1 make test runs without them and reports the skips.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
TORCH_VERSION ?= 2.13.0
ESM_VERSION ?= 3.2.1.post1
# Debian tools the data pipeline calls (homology clustering, BLAST database extraction).
SYSTEM_PACKAGES ?= mmseqs2 ncbi-blast+

.PHONY: setup demo demo-data test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: the local CPU wheel; a bare `torch` would pull GBs of CUDA packages.
	$(PIP) install -q torch==$(TORCH_VERSION)
	# [train]: megatron-core, NeMo-Run, the data pipeline; the base alone serves HF exports ([inference]).
	$(PIP) install -q -c constraints.txt -e ".[train,dev]"
	# esm declares pins it does not need (transformers<4.48.2, torchvision, torchtext): install without them.
	$(PIP) install -q -c constraints.txt --no-deps esm==$(ESM_VERSION)
	@bash scripts/install_system_packages.sh $(SYSTEM_PACKAGES)
	@touch $(STAMP)

# The CPU demo data under outputs/ that the tiny-cpu recipes read (each step skipped when done).
demo-data: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo_data.sh

demo: demo-data
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
