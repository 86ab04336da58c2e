# agentcat: the README's two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: install demo test test-slow test-stress test-all lint bench real-banks clean

# The calibration engine is torch, CPU build: PyPI's Linux torch is the CUDA build (with ~18
# nvidia-* packages, GBs), so torch alone comes from PyTorch's CPU index (--no-deps: only torch
# is looked up there; its small dependencies come from PyPI with the rest). For a GPU:
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cu128`.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "hint: install the venv module (Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -c "import torch; print('torch', torch.__version__, '(CUDA ' + str(torch.version.cuda) + ')')"
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
DATA ?= ../shared/data
real-banks: $(STAMP)
	nice $(BIN)/python bench/calibrate_real_banks.py --data $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
