# Two entry points for a fresh machine: `make train` (set up, then the default experiment) and
# `make test` (set up, then the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The team's read-only copy when it is there, else ./data (where a missing set is downloaded).
MNIST_ROOT ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(abspath data))
export MNIST_ROOT

.PHONY: setup lock train test test-fast chapter clean

setup: $(VENV)/.installed

# The exact versions (and hashes) of requirements/lock.txt, then the project itself on top.
$(VENV)/.installed: pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --require-hashes -r requirements/lock.txt
	$(BIN)/pip install --no-deps -e .
	touch $@

# After changing pyproject's dependencies: resolve them again into requirements/lock.txt.
lock: setup
	$(BIN)/pip install -q pip-tools
	$(BIN)/pip-compile --quiet --extra dev --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links -c requirements/torch.txt -o requirements/lock.txt pyproject.toml

train: setup
	$(BIN)/python train.py $(ARGS)

# Every table of docs/results.md: runs what is not yet run (resumable), then writes the pages.
chapter: setup
	$(BIN)/python -m mlplab.chapter $(ARGS)

test: setup
	WANDB_MODE=offline $(BIN)/python -m pytest --durations=15 $(ARGS)

# One worker per core: the fast tests share nothing but the read-only MNIST files.
test-fast: setup
	WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow" -n auto $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun wandb .pytest_cache
