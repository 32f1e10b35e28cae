# Two commands for a fresh clone: `make train` and `make test`. Both create the
# virtual environment in .venv (or refresh it when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# `make train CONFIG=best` trains with configs/best.cfg into runs/best.
CONFIG ?=
RUN_DIR = runs/$(or $(CONFIG),default)

# The offline MNIST beside the checkout, unless TFDS_DATA_DIR says otherwise.
SHARED_TFDS := $(abspath ../shared/tensorflow_datasets)
ifeq ($(origin TFDS_DATA_DIR),undefined)
ifneq ($(wildcard $(SHARED_TFDS)),)
export TFDS_DATA_DIR := $(SHARED_TFDS)
endif
endif

.PHONY: venv train test test-quick bench screenshots clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) && $(PY) -c "import sys" 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

train: $(STAMP)
	$(PY) -m logreg_tf.train $(if $(CONFIG),--flagfile=configs/$(CONFIG).cfg) --model_dir=$(RUN_DIR) $(ARGS)

# One test process per core and one more (pytest-xdist): a good part of the
# suite's time is tests waiting on programs (clusters, timeouts, signals),
# and the extra process keeps the cores busy meanwhile. README's Tests
# section gives the times.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(ARGS)

# The edit loop: no test that starts a program, and of the real data only
# one short run; a test process per core as well.
test-quick: $(STAMP)
	$(PY) -m pytest -n auto -m "not process and (not real_data or short)" $(ARGS)

bench: $(STAMP)
	$(PY) scripts/benchmark.py $(ARGS)

# Headless Chromium screenshots of TensorBoard and the figures, into docs/
# (needs Debian's chromium; not part of CI).
screenshots: $(STAMP)
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) runs .pytest_cache
