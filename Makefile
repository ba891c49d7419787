# Each target creates .venv on first use and installs the package into it, so a fresh
# clone needs nothing but Python 3.11 and the package registry.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build; on a CUDA machine override it: make test TORCH="torch==2.13.0 --index-url ..."
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test docs fuzz bench bench-all run-benchmarks exp-env experiments clean

demo: $(STAMP)
	$(BIN)/unetseg demo

# The docs build first (a few seconds; as `make docs` below, but rendering no figures), then
# the linter (rules in pyproject.toml), then the suite. The HTML report is checked in headless
# Chromium; where apt-get cannot install it (no root, no Debian), that one test says why it is
# skipped.
# `make test PYTEST_ARGS="-m 'not slow'"` leaves out the slow tests.
# The suite runs in one pytest-xdist worker per core, at most 4, each torch process on one
# thread (two processes of two threads each on two cores spin); `make test PYTEST_WORKERS=`
# runs it in one process.
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist worksteal
test: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/ruff check src tests benchmarks experiments docs
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq \
		chromium) >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will skip"
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)
	@if [ -x $(EXP)/bin/python ]; then \
		echo "== the tests that need smp, in $(EXP)"; \
		$(EXP)/bin/python -m pytest -m smp; \
	else \
		echo "no $(EXP) (make exp-env builds it): the smp tests were skipped"; \
	fi

# The documentation site into site/ (git-ignored), after rendering the measured figures
# afresh from their results files (docs/figures.py; `make test` renders nothing, and fails
# where a committed page differs from its files). --strict turns every warning into a
# failure: a broken link or anchor, a page left out of the nav, a docstring mkdocstrings cannot
# read. The CLI reference is generated from the argument parser during the build
# (docs/gen_cli_reference.py, a mkdocs hook), so it cannot drift from --help.
docs: $(STAMP)
	$(BIN)/python docs/figures.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Untrusted input at length: random image, mask and dataset files through check, train and
# predict (tests/test_fuzz.py; `make test` runs 4 of them). On the 2-core machine 3,000
# examples took 204 s, so the default is about ten minutes.
FUZZ_EXAMPLES ?= 9000
fuzz: $(STAMP)
	UNETSEG_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m fuzz \
		-p no:cacheprovider -q

# Timings, not tests: each script prints Markdown tables of medians and ranges, and ratios
# measured in the same run, and writes them to benchmarks/results/SCRIPT.json, from which `make
# docs` renders docs/benchmarks.md. `make bench` stays within a quarter of an hour on the
# 2-core CPU (timed once) by running fewer comparisons, never fewer steps: our training step
# and inference against the seed's own loop (train_step_ours_seed.json), the metrics, start-up,
# the inspector and the precision choice. `make bench-all` (about an hour) runs every script
# but the race, the training step with every peer twice and each speed lever. smp's rows need
# .venv-exp (`make exp-env` builds it) and are skipped without it. The race to a held-out
# accuracy is hours long: `.venv/bin/python benchmarks/time_to_accuracy.py --full --jobs 2
# --threads 1`.
BENCHMARKS := metrics_speed.py startup.py inspector_speed.py precision_choice.py
MORE_BENCHMARKS := tiled_predict.py data_speed.py folder_startup.py
bench: $(STAMP)
	@echo "== benchmarks/train_step.py (ours and the seed)"
	$(BIN)/python benchmarks/train_step.py --contenders "ours b32,seed (plain) (a)" \
		--out benchmarks/results/train_step_ours_seed.json
	@$(MAKE) --no-print-directory run-benchmarks SCRIPTS="$(BENCHMARKS)"

bench-all: $(STAMP)
	@echo "== benchmarks/train_step.py --levers (every contender)"
	$(BIN)/python benchmarks/train_step.py --levers
	@$(MAKE) --no-print-directory run-benchmarks SCRIPTS="$(BENCHMARKS) $(MORE_BENCHMARKS)"

run-benchmarks:
	@for script in $(SCRIPTS); do \
		echo "== benchmarks/$$script"; \
		$(BIN)/python benchmarks/$$script || exit 1; \
	done

# torch goes in first and alone: installed later as a dependency, pip would pick the newest
# (multi-GB CUDA) build; installed first, the package's "torch>=2.2" is already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The experiments environment: segmentation_models_pytorch needs torchvision, and PyPI's
# torchvision does not import beside the CPU torch 2.13.0 of .venv; this pair does (about
# 5.5 GB, a CUDA build). Kept apart so that .venv stays small.
EXP       := .venv-exp
EXP_TORCH ?= torch==2.14.1 torchvision==0.29.1
EXP_STAMP := $(EXP)/.installed

exp-env: $(EXP_STAMP)

# The two studies docs/experiments.md shows, as its tables' provenance lines record them: the
# main environment, each script's defaults (3 seeds, 300 steps, one thread) in bf16 through
# unetseg's fast path (as `unetseg train` trains where bf16 is faster; `--precision fp32` on a
# CPU without bf16 units), the two side by side on the 2 cores: 47 minutes on the Xeon that
# made the page (the longer one's wall_s). A full run rewrites
# docs/results/{loss,upsample}_study.json and the charts the page shows; `make docs` renders
# them. Each script also has --quick, which make test smoke-runs. The labelling and planning
# studies take many hours: their commands are on their pages.
experiments: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python experiments/loss_study.py --precision bf16 & loss=$$!; \
	OMP_NUM_THREADS=1 $(BIN)/python experiments/upsample_study.py --precision bf16; upsample=$$?; \
	wait $$loss && test $$upsample -eq 0

$(EXP_STAMP): pyproject.toml
	test -x $(EXP)/bin/python || $(PYTHON) -m venv $(EXP)
	$(EXP)/bin/python -m pip install --quiet --upgrade pip
	$(EXP)/bin/python -m pip install --quiet $(EXP_TORCH)
	$(EXP)/bin/python -m pip install --quiet -e ".[dev,smp]"
	touch $(EXP_STAMP)

clean:
	rm -rf $(VENV) $(EXP) build src/*.egg-info .pytest_cache .hypothesis
