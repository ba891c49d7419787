# Each target creates .venv on first use and installs the package into it, so a fresh
# clone needs nothing but Python 3.11 and the package registry.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build; on a CUDA machine override it: make test TORCH="torch==2.13.0 --index-url ..."
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

demo: $(STAMP)
	$(BIN)/unetseg demo

# The linter first (rules in pyproject.toml), then the suite. The HTML report is checked in
# headless Chromium; where apt-get cannot install it (no root, no Debian), that one test says
# why it is skipped. `make test PYTEST_ARGS="-m 'not slow'"` leaves out the slow tests.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq \
		chromium) >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will skip"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Timings, not tests: each script prints ratios measured in one run.
bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/predict_large.py
	$(BIN)/python benchmarks/inspector_speed.py

# torch goes in first and alone: installed later as a dependency, pip would pick the newest
# (multi-GB CUDA) build; installed first, the package's "torch>=2.2" is already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
