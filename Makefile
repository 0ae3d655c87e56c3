# AI Mass — `make help` lists the targets.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# llama.cpp must be built portable: a native build enables AMX kernels that crash in these VMs.
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export FORCE_CMAKE := 1

.PHONY: help install serve test lint format bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/aimass: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/aimass

install: $(BIN)/aimass ## Create .venv and install AI Mass with test tools

serve: install ## Run the server with the built-in models (AIMASS_HOST:AIMASS_PORT, default 127.0.0.1:8000)
	$(BIN)/aimass serve

test: install ## Run the whole test suite (ruff, the layer contracts, pytest)
	$(BIN)/ruff check aimass tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: install ## ruff check and format check
	$(BIN)/ruff check aimass tests benchmarks
	$(BIN)/ruff format --check aimass tests benchmarks

format: install ## Format the code
	$(BIN)/ruff format aimass tests benchmarks
	$(BIN)/ruff check --fix aimass tests benchmarks

bench: install ## Install benchmark extras (Ray Serve, sentence-transformers)
	$(BIN)/pip install -q -e '.[test,bench]'

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
