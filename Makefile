# The two commands of the README:
#   make demo   set everything up, build the demo workspace and serve it at http://127.0.0.1:8000
#   make test   set everything up (system packages and services too) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench services system

$(BIN)/metricloop: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/metricloop

demo: install
	$(BIN)/metricloop demo

services:
	bash scripts/services.sh

system:
	bash scripts/system.sh

lint: install
	$(BIN)/ruff check .

test: install system services lint
	$(BIN)/pytest -n 2 --dist loadfile

bench: install services
	$(BIN)/python bench/query_bench.py
