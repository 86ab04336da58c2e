# agentcat: the README's two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: install demo test test-slow test-stress test-all lint bench real-banks clean

# torch is pinned first: an unpinned torch makes pip fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# a live adaptive session against the built-in simulated agent (needs a Docker engine)
demo: $(STAMP)
	$(BIN)/agentcat demo --plot runs/demo-trajectory.png

# fast default suite (minutes); slow tests are marked and run by `make test-slow`
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not stress" -q; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test-stress: $(STAMP)
	$(BIN)/python -m pytest -m "stress" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# re-calibrate every bank under item_banks/ from the shared datasets (DATA=... to point elsewhere)
DATA ?= /work/shared/data
real-banks: $(STAMP)
	nice $(BIN)/python bench/calibrate_real_banks.py --data $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
