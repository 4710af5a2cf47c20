# The two commands a newcomer needs, and what they are made of.
#
#   make run    make or update .venv, then start the window (offline, on the demo model)
#   make test   make or update .venv with every extra, then the static checks and the tests
#
# Each target's pip commands are the README's, written out there for those without make.
# The environment is remade only when pyproject.toml changed since it was last made.

PYTHON ?= python3
VENV ?= .venv
# The trainer's tests need PyTorch. This pin is a CPU build where a wheel of it is at hand
# (our CI machines); elsewhere an unpinned or PyPI torch is a multi-GB CUDA build on Linux:
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0

BIN := $(VENV)/bin
PIP := $(BIN)/pip

.PHONY: run test check pytest env env-all clean-env

run: env
	$(BIN)/localchat

test: env-all check pytest

check: env-all
	$(BIN)/ruff check localchat tests benchmarks packaging
	$(BIN)/ruff format --check localchat tests benchmarks packaging
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: env-all
	$(BIN)/pytest

env: $(VENV)/.made-app
env-all: $(VENV)/.made-all

$(VENV)/.made-app: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.made-all: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev]"
	$(PIP) install $(TORCH)
	$(PIP) install -e ".[dev,train,package]"
	touch $@ $(VENV)/.made-app

clean-env:
	rm -rf $(VENV)
